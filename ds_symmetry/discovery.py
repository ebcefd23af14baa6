"""A discovered G-CNN: the exact group convolution a learned weight-sharing network points to.

Learned stacks are soft. :func:`discover_gcnn` rounds a network to the nearest exact model:

1. every element of the lifting layer's learned stack is projected to its nearest permutation
   (Hungarian assignment, ``analysis.nearest_permutations``);
2. the projected elements must close into a group: every product ``P_a P_b`` is again an
   element (``analysis.cayley_error`` with zero error). A finite set of permutations closed
   under products is a group; its multiplication table is read off in the learned order;
3. every group-convolution layer gets the exact regular representation of *that* group, in
   the same labelling: ``R_g = Λ_g ⊗ P_g`` with ``Λ_g[h, q] = 1`` iff ``P_g P_q = P_h``. The
   network is then exactly equivariant to the discovered group (and, when the group is the
   rotations by 90°, exactly invariant to rotating the input by 90°);
4. the stacks are frozen (``WSLiftConv.freeze_stack``): the model keeps its canonical
   kernels, loses its representation logits, and can be fine-tuned as an ordinary G-CNN.

The report names the group when it is one of ``ops.GROUP_NAMES`` (acting as on a kernel grid)
and says how far each learned layer was from what replaced it.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import numpy as np
from flax import nnx

from ds_symmetry.analysis import cayley_error, identify_group, nearest_permutations
from ds_symmetry.analysis.permutations import pairwise_distances
from ds_symmetry.nn.introspection import weight_sharing_layers
from ds_symmetry.nn.weight_sharing import WSGroupConv, WSLiftConv

# A closed set of permutations has products that *are* elements: exact zeros up to rounding.
_CLOSURE_TOLERANCE = 1e-9


@dataclasses.dataclass(frozen=True)
class Discovery:
  """What the lifting layer's learned stack rounds to.

  Attributes:
    permutations: float64 ``[n, k², k²]``, the nearest permutation of every element.
    projection_distances: float64 ``[n]``, ``‖R_i − P_i‖_F / √d``.
    closed: whether the permutations are closed under products (a group).
    table: int ``[n, n]``, ``table[a, b] = c`` with ``P_a P_b ≈ P_c`` (exact when closed).
    distinct: whether the ``n`` permutations are pairwise different (a group of order n).
    group: the name of the matching group of ``ops.GROUP_NAMES`` on the kernel grid, or
      ``None`` (not closed, repeated elements, or a closed permutation group with another
      action).
    labelling: int ``[n]`` (when ``group`` is named): learned element ``i`` is group element
      ``labelling[i]`` in ``ops.groups``' numbering.
  """
  permutations: np.ndarray
  projection_distances: np.ndarray
  closed: bool
  table: np.ndarray
  distinct: bool
  group: Optional[str]
  labelling: Optional[np.ndarray]

  @property
  def is_group(self) -> bool:
    """A group of order ``n``: closed and with distinct elements."""
    return self.closed and self.distinct


def discover_group(stack, kernel_size: int) -> Discovery:
  """Rounds a learned lifting stack ``[n, k², k²]`` and checks that it is a group."""
  permutations, distances = nearest_permutations(stack)
  cayley = cayley_error(permutations)
  closed = cayley.max_error <= _CLOSURE_TOLERANCE
  gaps = pairwise_distances(permutations, permutations)
  distinct = bool(np.all(gaps[~np.eye(len(gaps), dtype=bool)] > 0.5))
  group, labelling = None, None
  if closed and distinct:
    match = identify_group(permutations, kernel_size, "lift", threshold=1e-6)
    if match.name is not None and len(match.assignment) == len(set(match.assignment.tolist())):
      group, labelling = match.name, match.assignment
  return Discovery(permutations=permutations, projection_distances=distances, closed=closed,
                   table=cayley.table, distinct=distinct, group=group, labelling=labelling)


def committed_group(stack, kernel_size: int, within: float) -> Optional[Discovery]:
  """The discovery of a lifting stack ``[n, k², k²]`` that has committed to a group, else None.

  Committed: the nearest permutations are a group of ``n`` distinct elements and every element
  lies within ``within`` of its permutation (``‖R_i − P_i‖_F / √d``; a uniform blend of the
  grid's isometries is about 0.8–0.9 from its nearest one). The trainer's
  ``discover_when_within`` rounds a model at the first check where this holds.
  """
  if not within > 0:
    raise ValueError(f"within: {within!r} is not accepted; expected a positive distance")
  discovery = discover_group(stack, kernel_size)
  if discovery.is_group and float(np.max(discovery.projection_distances)) <= within:
    return discovery
  return None


def regular_group_stack(permutations: np.ndarray, table: np.ndarray) -> np.ndarray:
  """The exact group-convolution stack of a group given by spatial permutations.

  Args:
    permutations: ``[n, k², k²]`` permutation matrices forming a group.
    table: int ``[n, n]``, its multiplication table in the same order.

  Returns:
    float32 ``[n, n·k², n·k²]`` with ``out[g] = kron(Λ_g, P_g)``, ``Λ_g[table[g, q], q] = 1``.
  """
  n = permutations.shape[0]
  stack = []
  for g in range(n):
    regular = np.zeros((n, n))
    regular[table[g], np.arange(n)] = 1.0
    stack.append(np.kron(regular, permutations[g]))
  return np.stack(stack).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class DiscoveredModel:
  """Result of :func:`discover_gcnn`.

  Attributes:
    model: the copy with exact, frozen stacks (the input model is not changed).
    discovery: what the lifting stack rounded to (:class:`Discovery`).
    layer_distances: ``{layer path: mean ‖R_i − exact_i‖_F / √d}`` between every learned
      stack and the exact one that replaced it.
  """
  model: nnx.Module
  discovery: Discovery
  layer_distances: Dict[str, float]


def discover_gcnn(model: nnx.Module, require_group: bool = True) -> DiscoveredModel:
  """Replaces a network's learned stacks by the exact G-CNN of the group they point to.

  Args:
    model: an NNX model whose first learned weight-sharing layer is a ``WSLiftConv``.
    require_group: raise when the rounded lifting stack is not a group (default). With
      ``False`` the rounded lifting stack is frozen anyway and each group layer is rounded
      to its own nearest permutations (no equivariance is then guaranteed).

  Returns:
    :class:`DiscoveredModel`.

  Raises:
    ValueError: no learned lifting layer, or (``require_group``) the rounded stack is not a
      group of distinct elements.
  """
  copy = nnx.merge(*nnx.split(model))
  layers = [(path, layer) for path, layer in weight_sharing_layers(copy) if layer.is_learned]
  lifting = [(path, layer) for path, layer in layers if isinstance(layer, WSLiftConv)]
  if not lifting:
    raise ValueError("model has no learned lifting layer (WSLiftConv) to discover a group from")
  lift_path, lift = lifting[0]
  # Read every learned stack before freezing anything: tied layers read the lifting stack.
  stacks = {path: np.asarray(layer.representation_stack()) for path, layer in layers}
  discovery = discover_group(stacks[lift_path], lift.kernel_size)
  if require_group and not discovery.is_group:
    raise ValueError(
        f"the lifting stack of {lift_path!r} does not round to a group: closed="
        f"{discovery.closed}, distinct elements={discovery.distinct} (projection distances "
        f"{np.round(discovery.projection_distances, 3).tolist()}); train longer, or pass "
        f"require_group=False to round every layer on its own")
  distances = {}
  for path, layer in layers:
    if layer is lift:
      exact = discovery.permutations
    elif isinstance(layer, WSGroupConv) and discovery.is_group:
      exact = regular_group_stack(discovery.permutations, discovery.table)
    else:
      exact = nearest_permutations(stacks[path])[0]
    distances[path] = float(np.mean(np.diagonal(pairwise_distances(stacks[path], exact))))
    layer.freeze_stack(exact)
  return DiscoveredModel(model=copy, discovery=discovery, layer_distances=distances)
