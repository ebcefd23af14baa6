"""Pure jnp operations (no Flax): group representations, kernel stacks, convolutions."""

from ds_symmetry.ops.groups import (D4_SUBGROUPS, GROUP_NAMES, GroupSpec, apply_element,
                                    c4xc4_in_c4xc4xc4, cayley_table, d4_elements, group_names, group_order, group_spec,
                                    inverse_indices, orthogonality_error, register_group,
                                    regular_permutations, shift_twist_permutations,
                                    group_spatial_dims, spatial_permutations)
from ds_symmetry.ops.kernels import (check_spatial_dims, conv2d, conv_nd, group_conv,
                                     group_conv_nd, group_kernels, group_kernels_nd, group_pool,
                                     lift_conv, lift_conv_nd, lift_kernels, lift_kernels_nd)
from ds_symmetry.ops.normalization import spatial_max_pool, standardize
from ds_symmetry.ops.regularisers import entropy, norm_loss
from ds_symmetry.ops.sinkhorn import marginal_error, sinkhorn
