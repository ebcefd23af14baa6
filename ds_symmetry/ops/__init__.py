"""Pure jnp operations (no Flax): group representations, kernel stacks, convolutions."""

from ds_symmetry.ops.groups import (GROUP_NAMES, apply_element, cayley_table, compose,
                                    dihedral_permutations, flip_permutations, group_order, inverse_indices, invert,
                                    regular_permutations, rotation_permutations,
                                    shift_twist_permutations, spatial_permutations)
from ds_symmetry.ops.kernels import (conv2d, group_conv, group_kernels, group_pool, lift_conv,
                                     lift_kernels)
from ds_symmetry.ops.normalization import spatial_max_pool, standardize
from ds_symmetry.ops.regularisers import entropy, norm_loss
from ds_symmetry.ops.sinkhorn import marginal_error, sinkhorn
