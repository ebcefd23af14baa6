"""Pure jnp operations (no Flax): group representations, kernel stacks, convolutions."""

from ds_symmetry.ops.groups import (GROUP_NAMES, cayley_table, compose, dihedral_permutations,
                                    flip_permutations, group_order, inverse_indices, invert,
                                    regular_permutations, rotation_permutations,
                                    shift_twist_permutations, spatial_permutations)
from ds_symmetry.ops.kernels import (conv2d, group_conv, group_kernels, group_pool, lift_conv,
                                     lift_kernels)
