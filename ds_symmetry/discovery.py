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

A :class:`~ds_symmetry.nn.SubgroupSelector` has no stack to round: its answer is the most
probable subgroup, and the model it points to is that subgroup's exact G-CNN, fresh
(``build``); or, with ``keep_backbone``, its own trained backbone averaged over the answer
(``nn.GroupAveraged``), exactly invariant to it; or, with ``keep_backbone`` and
``expand_backbone``, the answer's exact G-CNN started from the backbone's filters
(``models.gcnn_from_cnn``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Union

import numpy as np
from flax import nnx

from ds_symmetry.analysis import cayley_error, identify_group, nearest_permutations
from ds_symmetry.analysis.permutations import pairwise_distances
from ds_symmetry.models.expansion import gcnn_from_cnn
from ds_symmetry.nn.group_averaging import GroupAveraged
from ds_symmetry.nn.introspection import weight_sharing_layers
from ds_symmetry.nn.subgroup_selection import SubgroupSelector
from ds_symmetry.nn.weight_sharing import WSGroupConv, WSLiftConv
from ds_symmetry.ops.groups import group_order

# A closed set of permutations has products that *are* elements: exact zeros up to rounding.
_CLOSURE_TOLERANCE = 1e-9


@dataclasses.dataclass(frozen=True)
class Discovery:
  """What the lifting layer's learned stack rounds to.

  A stack of ``n`` slots may hold a group of order ``m < n``: slots that round to the same
  permutation *collapse* onto one element. The answer is the set of distinct permutations,
  when it is closed under products.

  Attributes:
    permutations: float64 ``[n, k², k²]``, the nearest permutation of every slot.
    projection_distances: float64 ``[n]``, ``‖R_i − P_i‖_F / √d``.
    closed: whether the distinct permutations are closed under products (a group).
    table: int ``[n, n]``, ``table[a, b] = c`` with ``P_a P_b ≈ P_c`` (exact when closed; a
      repeated element is represented by its first slot).
    distinct: whether the ``n`` permutations are pairwise different (a group of order n).
    elements: int ``[m]``, the first slot of every distinct permutation (ascending).
    group: the name of the matching group of ``ops.GROUP_NAMES`` on the kernel grid, or
      ``None`` (not closed, or a closed permutation group with another action).
    labelling: int ``[n]`` (when ``group`` is named): slot ``i`` is group element
      ``labelling[i]`` in ``ops.groups``' numbering.
  """
  permutations: np.ndarray
  projection_distances: np.ndarray
  closed: bool
  table: np.ndarray
  distinct: bool
  elements: np.ndarray
  group: Optional[str]
  labelling: Optional[np.ndarray]

  @property
  def is_group(self) -> bool:
    """The distinct permutations form a group (of order ``order``)."""
    return self.closed

  @property
  def order(self) -> int:
    """The number of distinct permutations ``m``."""
    return int(len(self.elements))


def _distinct_slots(permutations: np.ndarray) -> np.ndarray:
  """The first slot of every distinct permutation of ``[n, d, d]``, ascending."""
  gaps = pairwise_distances(permutations, permutations)
  first = [i for i in range(len(permutations)) if not np.any(gaps[i, :i] < 0.5)]
  return np.asarray(first, dtype=np.int64)


def discover_group(stack, kernel_size: int) -> Discovery:
  """Rounds a learned lifting stack ``[n, k², k²]`` and checks that its distinct elements are
  a group (slots that round to the same permutation collapse onto one element)."""
  permutations, distances = nearest_permutations(stack)
  elements = _distinct_slots(permutations)
  distinct_permutations = permutations[elements]
  closed = cayley_error(distinct_permutations).max_error <= _CLOSURE_TOLERANCE
  # Products of slots, as slots (a repeated element answers with its first slot).
  products = np.einsum("aij,bjk->abik", permutations, permutations)
  n, d = permutations.shape[0], permutations.shape[-1]
  gaps = pairwise_distances(products.reshape(n * n, d, d), permutations[elements])
  table = elements[np.argmin(gaps, axis=1)].reshape(n, n)
  group, labelling = None, None
  if closed:
    match = identify_group(permutations, kernel_size, "lift", threshold=1e-6)
    if match.name is not None and group_order(match.name) == len(elements):
      group, labelling = match.name, np.asarray(match.assignment)
  return Discovery(permutations=permutations, projection_distances=distances, closed=closed,
                   table=table, distinct=len(elements) == n, elements=elements, group=group,
                   labelling=labelling)


def committed_group(stack, kernel_size: int, within: float) -> Optional[Discovery]:
  """The discovery of a lifting stack ``[n, k², k²]`` that has committed to a group, else None.

  Committed: every slot lies within ``within`` of its nearest permutation
  (``‖R_i − P_i‖_F / √d``; a uniform blend of the grid's isometries is about 0.8–0.9 from its
  nearest one) and the distinct permutations are closed under products. A group of any order
  ``m ≤ n`` can be named (slots collapse onto repeated elements); a blurred or half-committed
  stack, or sharp elements that do not close, are not rounded. The trainer's
  ``config.discovery.when_within`` rounds a model at the first check where this holds.
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
class SubgroupChoice:
  """What a :class:`~ds_symmetry.nn.SubgroupSelector` chose.

  Attributes:
    group: the most probable candidate subgroup of ``D4``.
    probabilities: ``{candidate: q}``.
  """
  group: str
  probabilities: Dict[str, float]

  @property
  def is_group(self) -> bool:
    """Always true: every candidate is a group."""
    return True

  @property
  def order(self) -> int:
    """The chosen group's order."""
    return group_order(self.group)


@dataclasses.dataclass(frozen=True)
class DiscoveredModel:
  """Result of :func:`discover_gcnn`.

  Attributes:
    model: the exact G-CNN (the input model is not changed): a copy with exact, frozen stacks
      when the lifting stack rounds to as many distinct elements as it has slots; otherwise a
      new model from ``build(group)``.
    discovery: what was rounded (:class:`Discovery` for a learned lifting stack,
      :class:`SubgroupChoice` for a ``SubgroupSelector``).
    layer_distances: ``{layer path: mean ‖R_i − exact_i‖_F / √d}`` between every learned
      stack and the exact one that replaced it (empty for a rebuilt model).
    rebuilt: whether ``model`` is a new model from ``build`` (fresh weights) rather than the
      input model with frozen stacks.
    kept_backbone: whether ``model`` is built from a selector's trained backbone: averaged
      over the answer (``nn.GroupAveraged``), or expanded into its G-CNN.
    expanded_backbone: whether that backbone was expanded into the answer's exact G-CNN
      (``models.gcnn_from_cnn``) rather than averaged.
  """
  model: nnx.Module
  discovery: Union[Discovery, SubgroupChoice]
  layer_distances: Dict[str, float]
  rebuilt: bool = False
  kept_backbone: bool = False
  expanded_backbone: bool = False

  def record(self) -> Dict[str, object]:
    """A JSON-serialisable summary: ``group``, ``order``, ``is_group``, and the rounding's
    distances (stacks) or the subgroup probabilities (selector)."""
    found = self.discovery
    out: Dict[str, object] = {"group": found.group, "order": found.order,
                              "is_group": found.is_group, "rebuilt": self.rebuilt,
                              "kept_backbone": self.kept_backbone,
                              "expanded_backbone": self.expanded_backbone,
                              "layer_distances": dict(self.layer_distances)}
    if isinstance(found, SubgroupChoice):
      out["subgroup_probabilities"] = dict(found.probabilities)
    else:
      out.update(projection_distances=found.projection_distances.tolist(),
                 labelling=None if found.labelling is None else found.labelling.tolist())
    return out


def discover_subgroup_gcnn(selector: SubgroupSelector,
                           build: Optional[Callable[[str], nnx.Module]] = None, *,
                           keep_backbone: bool = False,
                           expand_backbone: bool = False) -> DiscoveredModel:
  """The exactly invariant model of the subgroup a ``SubgroupSelector`` finds most probable.

  Args:
    selector: the learned model (not changed).
    build: ``build(group_name)`` returns a fresh exact G-CNN of that group (e.g.
      ``create_model("gcnn", group=name, ...)``): ``|H|`` distinct elements, whatever the
      selector's backbone was. Required unless ``keep_backbone``.
    keep_backbone: instead of a fresh G-CNN, keep the selector's trained backbone (a copy)
      and average it over the answer: ``nn.GroupAveraged(backbone, answer)``, the selector's
      own readout ``y_H`` of that subgroup (``rebuilt`` is then False).
    expand_backbone: with ``keep_backbone``, expand the backbone (a plain ``ConvNet``) into
      the answer's exact G-CNN with its filters on the identity slices
      (``models.gcnn_from_cnn``) instead of averaging it.
  """
  q = np.asarray(selector.probabilities(), dtype=np.float64)
  choice = SubgroupChoice(group=selector.candidates[int(np.argmax(q))],
                          probabilities={name: float(p)
                                         for name, p in zip(selector.candidates, q)})
  if expand_backbone and not keep_backbone:
    raise ValueError("expand_backbone: True is not accepted without keep_backbone=True")
  if keep_backbone:
    backbone = nnx.clone(selector.backbone)  # a deep copy: the selector is unchanged
    model = (gcnn_from_cnn(backbone, choice.group) if expand_backbone
             else GroupAveraged(backbone, choice.group))
    return DiscoveredModel(model=model, discovery=choice, layer_distances={},
                           kept_backbone=True, expanded_backbone=bool(expand_backbone))
  if build is None:
    raise ValueError("build: None is not accepted for a SubgroupSelector without "
                     "keep_backbone; expected a callable build(group_name) returning the exact "
                     "G-CNN")
  return DiscoveredModel(model=build(choice.group), discovery=choice, layer_distances={},
                         rebuilt=True)


def discover_gcnn(model: nnx.Module, require_group: bool = True, *,
                  build: Optional[Callable[[str], nnx.Module]] = None,
                  keep_backbone: bool = False,
                  expand_backbone: bool = False) -> DiscoveredModel:
  """Replaces a network's learned stacks by the exact G-CNN of the group they point to.

  Args:
    model: an NNX model whose first learned weight-sharing layer is a ``WSLiftConv``, or a
      ``SubgroupSelector`` (then ``build`` is required: :func:`discover_subgroup_gcnn`).
    require_group: raise when the rounded lifting stack is not a group (default). With
      ``False`` the rounded lifting stack is frozen anyway and each group layer is rounded
      to its own nearest permutations (no equivariance is then guaranteed); so is a group
      with repeated slots when no ``build`` is given.
    build: ``build(group_name)`` returns a fresh exact G-CNN of a named group. Needed when
      the answer has fewer distinct elements than the stack has slots (its group layers
      cannot keep their ``n``-slot weights) and for a ``SubgroupSelector`` (unless
      ``keep_backbone``).
    keep_backbone: for a ``SubgroupSelector`` only: keep its trained backbone, averaged over
      the answer (:func:`discover_subgroup_gcnn`), instead of a fresh G-CNN.
    expand_backbone: with ``keep_backbone``: expand the backbone into the answer's G-CNN
      (:func:`discover_subgroup_gcnn`).

  Returns:
    :class:`DiscoveredModel`.

  Raises:
    ValueError: no learned lifting layer, or (``require_group``) the rounded stack is not a
      group; or a collapsed answer (or a selector) without ``build``.
  """
  if isinstance(model, SubgroupSelector):
    return discover_subgroup_gcnn(model, build, keep_backbone=keep_backbone,
                                  expand_backbone=expand_backbone)
  if keep_backbone or expand_backbone:
    raise ValueError(f"keep_backbone / expand_backbone: True is not accepted for a "
                     f"{type(model).__name__}; expected a SubgroupSelector (a learned stack is "
                     "rounded in place)")
  copy = nnx.clone(model)  # a deep copy (merge(split(model)) would share its Variables)
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
  if discovery.is_group and not discovery.distinct and (require_group or build is not None):
    if build is None or discovery.group is None:
      raise ValueError(
          f"the lifting stack of {lift_path!r} rounds to {discovery.order} distinct elements "
          f"in {len(discovery.permutations)} slots (group {discovery.group!r}); its exact "
          "G-CNN has other layer shapes: pass build(group_name) to build it")
    return DiscoveredModel(model=build(discovery.group), discovery=discovery,
                           layer_distances={}, rebuilt=True)
  distances = {}
  for path, layer in layers:
    if layer is lift:
      exact = discovery.permutations
    elif isinstance(layer, WSGroupConv) and discovery.is_group and discovery.distinct:
      exact = regular_group_stack(discovery.permutations, discovery.table)
    else:
      exact = nearest_permutations(stacks[path])[0]
    distances[path] = float(np.mean(np.diagonal(pairwise_distances(stacks[path], exact))))
    layer.freeze_stack(exact)
  return DiscoveredModel(model=copy, discovery=discovery, layer_distances=distances)
