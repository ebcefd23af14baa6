"""What a learned representation stack became: nearest permutation, nearest group, Cayley error.

Host-side numpy/scipy; inputs may be jax or numpy arrays. Distances are ``‖A − B‖_F / √d``.

* ``nearest_permutation(S) -> (P, distance)``, ``nearest_permutations(stack)``.
* ``distance_to_group(stack, name, kernel_size, kind) -> GroupDistance``.
* ``identify_group(stack, kernel_size, kind, threshold) -> GroupMatch``.
* ``cayley_error(stack) -> CayleyResult``.
* ``convex_decomposition(R, basis) -> coefficients`` (paper App. B), ``decomposition_score``.
* ``summarize_stack(stack, kernel_size, kind) -> dict`` (JSON-serialisable).
* ``invariance_ratios(apply_fn, images, labels)``, ``invariant_subgroup(ratios)``: which
  isometries the *data* are invariant to, read off a trained classifier's held-out loss.
* ``plot_stack``, ``plot_kernel_orbit``, ``plot_cayley``, ``plot_decomposition``,
  ``plot_stack_against``, ``plot_training_curves`` (PNG; matplotlib imported lazily).
"""

from ds_symmetry.analysis.decomposition import (convex_combination, convex_decomposition,
                                                decomposition_score)
from ds_symmetry.analysis.groups import (DEFAULT_THRESHOLD, IMAGE_GROUPS, KINDS, CayleyResult,
                                         GroupDistance, GroupMatch, cayley_error, distance_to_group,
                                         group_representations, identify_group)
from ds_symmetry.analysis.invariance import (invariance_ratios, invariant_subgroup,
                                             subgroup_ratios)
from ds_symmetry.analysis.permutations import (nearest_permutation, nearest_permutations,
                                               pairwise_distances, permutation_indices)
from ds_symmetry.analysis.plots import (plot_cayley, plot_decomposition, plot_kernel_orbit,
                                       plot_stack, plot_stack_against, plot_training_curves)
from ds_symmetry.analysis.summary import summarize_stack
