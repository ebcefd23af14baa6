"""Which group, if any, a learned stack of soft permutations became.

A layer owns a stack ``R [n, d, d]``. With symmetric data the paper expects the stack to
approach a regular representation: for a lifting layer (``kind="lift"``, ``d = k²``) the
spatial permutations ``ops.spatial_permutations(name, k)``; for a group convolution
(``kind="group"``, ``d = G·k²``) the shift-twist permutations
``ops.shift_twist_permutations(name, k)``. Learned elements come in no particular order, so
every comparison first *assigns* learned elements to group elements.

Distances are ``‖R − P‖_F / √d`` (see ``analysis.permutations``): about ``ε`` for a
permutation blurred by ``ε`` towards uniform, about 1 for a uniform matrix, and ≥ 1.15 between
two distinct elements of any supported group (k ≥ 3).
"""

from __future__ import annotations

import dataclasses
import itertools
import numbers
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from ds_symmetry.analysis.permutations import (check_kernel_size, check_stack,
                                               pairwise_distances)
from ds_symmetry.ops import groups as _groups

KINDS = ("lift", "group")
DEFAULT_THRESHOLD = 0.5


def _check_kind(kind) -> str:
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
  return kind


# Candidate groups by default: the exact 2-D pixel-grid groups of the registry (ops.groups).
IMAGE_GROUPS = _groups.group_names(spatial_dims=2, permutation=True)


def _check_name(name) -> str:
  return _groups.group_spec(name).name  # ValueError naming the registered groups


def _check_stack_for_kind(stack: np.ndarray, kernel_size: int, kind: str,
                          spatial_dims: int = 2) -> None:
  n, d = stack.shape[0], stack.shape[-1]
  grid = kernel_size**spatial_dims
  expected = grid if kind == "lift" else n * grid
  if d != expected:
    power = {1: "", 2: "²", 3: "³"}[spatial_dims]
    rule = f"k{power}" if kind == "lift" else f"n·k{power} (n = stack size)"
    raise ValueError(
        f"kernel_size={kernel_size} does not fit stack of shape {stack.shape} for "
        f"kind={kind!r}: matrices must be d×d with d = {rule} = {expected}")


def group_representations(name: str, kernel_size: int, kind: str = "lift") -> np.ndarray:
  """Exact representations to compare against, float64.

  Returns:
    ``[G, k², k²]`` for ``kind="lift"`` or ``[G, G·k², G·k²]`` for ``kind="group"`` (``k^D``
    in place of ``k²`` for groups of 1-D or 3-D grids).
  """
  _check_name(name)
  _check_kind(kind)
  kernel_size = check_kernel_size(kernel_size)
  reps = (_groups.spatial_permutations(name, kernel_size) if kind == "lift"
          else _groups.shift_twist_permutations(name, kernel_size))
  return np.asarray(reps, dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class GroupDistance:
  """How close a learned stack ``[n, d, d]`` is to a group ``G`` with ``|G|`` elements.

  Attributes:
    name: the group.
    cost: float64 ``[n, |G|]``, ``cost[i, g] = ‖R_i − P_g‖_F / √d``.
    assignment: int ``[n]``, the one-to-one assignment minimising the summed distance
      (Hungarian on ``cost``): learned element ``i`` ↦ group element ``assignment[i]``;
      ``-1`` for the ``n − |G|`` learned elements left unassigned when ``n > |G|``. When
      ``n < |G|`` only a subset of the group is used.
    distances: float64 ``[n]``, ``cost[i, assignment[i]]``; NaN where unassigned.
    mean_distance: mean of ``distances`` over assigned elements.
    nearest: int ``[n]``, the unconstrained closest group element of each learned element.
    nearest_distances: float64 ``[n]``, the distance to it.
    covers_group: ``n ≥ |G|`` (every group element can have its own learned element).
    covering_assignment: int ``[n]``. When ``n ≥ |G|``: every learned element is mapped to a
      group element and every group element receives at least one learned element. When
      ``n < |G|``: a one-to-one map into distinct group elements. Among such maps, the one
      whose *largest* distance is smallest (bottleneck assignment), ties broken by the
      smallest summed distance.
    covering_distance: that largest distance, ``max_i cost[i, covering_assignment[i]]``: every
      learned element is within it of a group element and (when ``n ≥ |G|``) every group
      element has a learned element within it. This is the score ``identify_group`` uses.
    covering_mean: the mean distance under ``covering_assignment``.
    labelling: for ``kind="group"``, int ``[n]``: the group element each learned element is
      taken to be *on the input-element axis* (see :func:`group_labelling`); the exact
      representation compared against is relabelled accordingly. ``None`` for ``kind="lift"``.
  """
  name: str
  cost: np.ndarray
  assignment: np.ndarray
  distances: np.ndarray
  mean_distance: float
  nearest: np.ndarray
  nearest_distances: np.ndarray
  covers_group: bool
  covering_assignment: np.ndarray
  covering_distance: float
  covering_mean: float
  labelling: Optional[np.ndarray] = None


def _saturating_matching_exists(allowed: np.ndarray) -> bool:
  """Whether the bipartite graph ``allowed [n, m]`` has a matching of size ``min(n, m)``."""
  rows, cols = linear_sum_assignment((~allowed).astype(np.float64))
  return not np.any(~allowed[rows, cols])


def _bottleneck(cost: np.ndarray, lower: float) -> float:
  """Smallest ``t ≥ lower`` such that entries ``≤ t`` admit a matching of size min(n, m)."""
  values = np.unique(cost[cost >= lower])
  low, high = 0, len(values) - 1            # the largest value always admits a matching
  while low < high:
    middle = (low + high) // 2
    if _saturating_matching_exists(cost <= values[middle]):
      high = middle
    else:
      low = middle + 1
  return float(values[low])


def _group_distance_from_cost(name: str, cost: np.ndarray,
                              labelling: Optional[np.ndarray] = None) -> GroupDistance:
  n, order = cost.shape
  rows, cols = linear_sum_assignment(cost)
  assignment = np.full(n, -1, dtype=np.int64)
  assignment[rows] = cols
  distances = np.full(n, np.nan)
  distances[rows] = cost[rows, cols]
  nearest = np.argmin(cost, axis=1).astype(np.int64)
  nearest_distances = cost[np.arange(n), nearest]

  # Bottleneck value: with n ≥ |G| every learned element must also reach its nearest element.
  lower = float(nearest_distances.max()) if n >= order else 0.0
  bottleneck = _bottleneck(cost, lower)
  masked = np.where(cost <= bottleneck, cost, 1e6 + cost)
  if n >= order:
    # Square problem: |G| "must cover" columns plus n − |G| free columns, each costing the
    # row's best group element. Any covering map is one such matching and vice versa.
    free = np.repeat(nearest_distances[:, None], n - order, axis=1)
    rows_c, cols_c = linear_sum_assignment(np.concatenate([masked, free], axis=1))
    covering = np.empty(n, dtype=np.int64)
    covering[rows_c] = np.where(cols_c < order, cols_c, nearest[rows_c])
  else:
    rows_c, cols_c = linear_sum_assignment(masked)
    covering = np.empty(n, dtype=np.int64)
    covering[rows_c] = cols_c
  covering_costs = cost[np.arange(n), covering]
  return GroupDistance(
      name=name, cost=cost, assignment=assignment, distances=distances,
      mean_distance=float(np.nanmean(distances)), nearest=nearest,
      nearest_distances=nearest_distances, covers_group=n >= order,
      covering_assignment=covering, covering_distance=float(covering_costs.max()),
      covering_mean=float(covering_costs.mean()), labelling=labelling)


def spatial_marginals(stack, kernel_size: int) -> np.ndarray:
  """The spatial part of group-convolution matrices: ``[n, k², k²]``.

  ``M_i = (1/n) Σ_{h, q} R_i[(h, ·), (q, ·)]`` (the ``k²×k²`` blocks summed over input and
  output elements). For ``R_i = Λ ⊗ L`` with a permutation ``Λ`` this is exactly ``L``.
  """
  array = check_stack(stack, "stack")
  kernel_size = check_kernel_size(kernel_size)
  _check_stack_for_kind(array, kernel_size, "group")
  n, k2 = array.shape[0], kernel_size ** 2
  return array.reshape(n, n, k2, n, k2).sum(axis=(1, 3)) / n


def group_labelling(stack, name: str, kernel_size: int) -> np.ndarray:
  """Which element of group ``name`` each learned element of a group convolution is.

  Learned elements come in an arbitrary order, and the same order labels the input-element
  axis of the next layer; judging a group layer therefore needs one labelling for both. It is
  read from the spatial marginals (:func:`spatial_marginals`): a one-to-one assignment
  (Hungarian) of the ``n`` marginals to the group's spatial permutations.

  Returns:
    int ``[n]``: ``labelling[i]`` is the group element of learned element ``i`` (n == |G|).
  """
  array = check_stack(stack, "stack")
  if array.shape[0] != _groups.group_order(_check_name(name)):
    raise ValueError(f"name={name!r} has {_groups.group_order(name)} elements, but the stack "
                     f"{array.shape} has n={array.shape[0]}")
  cost = pairwise_distances(spatial_marginals(array, kernel_size),
                            group_representations(name, kernel_size, "lift"))
  _, columns = linear_sum_assignment(cost)
  return columns.astype(np.int64)


def relabelled_shift_twist(name: str, kernel_size: int, labelling) -> np.ndarray:
  """The exact group-convolution representation when learned element ``i`` is group element
  ``labelling[i]`` on the input-element axis.

  Returns:
    float64 ``[G, G·k², G·k²]``, indexed by the group element ``g``:
    ``kron(Λ_g, L_g)`` with ``Λ_g[h, q] = 1`` iff ``labelling[h] = g · labelling[q]``. With
    ``labelling = arange(G)`` it equals ``ops.shift_twist_permutations``.
  """
  order = _groups.group_order(_check_name(name))
  labelling = np.asarray(labelling, dtype=np.int64)
  if labelling.shape != (order,) or sorted(labelling.tolist()) != list(range(order)):
    raise ValueError(f"labelling must be a permutation of range({order}); got "
                     f"{labelling.tolist()}")
  table = _groups.cayley_table(name)
  spatial = group_representations(name, kernel_size, "lift")
  position = np.argsort(labelling)          # group element -> learned index
  reps = []
  for g in range(order):
    regular = np.zeros((order, order))
    for q in range(order):
      regular[position[table[g, labelling[q]]], q] = 1.0
    reps.append(np.kron(regular, spatial[g]))
  return np.stack(reps)


def distance_to_group(stack, name: str, kernel_size: int, kind: str = "lift",
                      input_labelling=None) -> GroupDistance:
  """Distances between a learned stack and the exact representation of a group.

  Args:
    stack: ``[n, d, d]`` learned (soft) permutations, jax or numpy.
    name: one of ``ops.GROUP_NAMES``.
    kernel_size: k.
    kind: ``"lift"`` (``d = k²``, spatial permutations) or ``"group"`` (``d = |G|·k²``,
      shift-twist permutations; needs ``n == |G|`` since ``d = n·k²``). A group layer is
      judged up to relabellings of the group elements: its output elements are matched to
      group elements one to one (as for ``"lift"``), and its input-element axis, which is the
      previous layer's output axis, may carry another labelling (``labelling`` in the result:
      input index ``h`` is group element ``labelling[h]``). It is ``input_labelling`` when
      given (e.g. the previous layer's assignment); otherwise the best of every labelling for
      groups of order ≤ 6, or, for larger groups, of the canonical order and the layer's own
      (:func:`group_labelling`). An exact G-CNN layer whose elements come in another order is
      at distance 0.
    input_labelling: optional int ``[|G|]`` labelling of the input-element axis.

  Returns:
    :class:`GroupDistance`.

  Raises:
    ValueError: unknown ``name``/``kind``, a stack that is not ``[n, d, d]``, or a ``d`` that
      does not fit ``kernel_size`` and ``kind``.
  """
  array = check_stack(stack, "stack")
  _check_name(name)
  _check_kind(kind)
  kernel_size = check_kernel_size(kernel_size)
  _check_stack_for_kind(array, kernel_size, kind, _groups.group_spatial_dims(name))
  if kind == "group" and array.shape[0] != _groups.group_order(name):
    raise ValueError(
        f"name={name!r} has {_groups.group_order(name)} elements, but a group-convolution "
        f"stack of shape {array.shape} has n={array.shape[0]} (kind='group' needs "
        f"n == |G|)")
  if kind == "lift":
    reps = group_representations(name, kernel_size, kind)
    return _group_distance_from_cost(name, pairwise_distances(array, reps))
  order = array.shape[0]
  if input_labelling is not None:
    candidates = [np.asarray(input_labelling, dtype=np.int64)]
  elif order <= 6:
    candidates = [np.asarray(p, dtype=np.int64) for p in itertools.permutations(range(order))]
  else:
    candidates = [np.arange(order), group_labelling(array, name, kernel_size)]
  best = None
  for labelling in candidates:
    reps = relabelled_shift_twist(name, kernel_size, labelling)
    result = _group_distance_from_cost(name, pairwise_distances(array, reps), labelling)
    # Relabellings that differ by a translation of the group can score the same; prefer the
    # one that calls input element 0 the identity (the fixed identity comes first).
    key = (round(result.covering_distance, 9), round(result.covering_mean, 9),
           int(labelling[0] != 0))
    if best is None or key < best[0]:
      best = (key, result)
  return best[1]


@dataclasses.dataclass(frozen=True)
class GroupMatch:
  """Result of :func:`identify_group`.

  Attributes:
    name: the identified group, or ``None`` when no candidate is within ``threshold``.
    distance: the score of ``name`` (or, when ``name`` is None, of the best comparable
      candidate; ``inf`` if no candidate was comparable).
    threshold: the threshold used.
    best_candidate: the candidate with the smallest score (even if above ``threshold``), or
      ``None`` when none was comparable.
    candidates: ``{group: score}`` for every candidate; ``inf`` for candidates that cannot be
      identified (stack smaller than the group, or, for ``kind="group"``, ``n != |G|``).
    subset_distances: ``{group: score}`` for groups larger than the stack (lift only): the
      worst element under the best one-to-one (bottleneck) assignment of the ``n`` learned
      elements to *distinct* group elements, i.e. how well the stack sits inside the group.
    contained_in: groups larger than the stack whose subset distance is within ``threshold``
      (e.g. a C4 stack is contained in D4; ``{e, e, r², r²}`` is not).
    assignment: int ``[n]``, the covering assignment (learned element ↦ group element) for
      ``name`` (or ``best_candidate``); ``None`` when neither exists.
    per_element: float64 ``[n]``, the distances under ``assignment`` (or ``None``).
    details: ``{group: GroupDistance}`` for every comparable candidate.
  """
  name: Optional[str]
  distance: float
  threshold: float
  best_candidate: Optional[str]
  candidates: Dict[str, float]
  subset_distances: Dict[str, float]
  contained_in: Tuple[str, ...]
  assignment: Optional[np.ndarray]
  per_element: Optional[np.ndarray]
  details: Dict[str, GroupDistance]


def identify_group(stack, kernel_size: int, kind: str = "lift",
                   threshold: float = DEFAULT_THRESHOLD,
                   groups: Sequence[str] = IMAGE_GROUPS) -> GroupMatch:
  """Names the known group a learned stack is closest to, or ``None``.

  Criterion. For each candidate group ``G`` with ``|G| ≤ n`` (the stack size), the score is
  ``GroupDistance.covering_distance``: the smallest ``t`` such that every learned element is
  within ``t`` of a group element *and* every group element has its own learned element
  within ``t`` (a bottleneck assignment, solved exactly). So the stack must both cover the
  group and contain nothing far from it: a C4 stack of 4 scores ≈ 0 for C4 but ≈ 1.4 for
  trivial or C2 (90° rotations are far from all their elements); ``{e, e, r², r²}`` scores
  ≈ 0 for C2 but not for C4 (nothing covers r); four copies of the identity are trivial, not
  flip. It is a worst case on purpose: one learned element stuck far from the group, or one
  group element nobody learned, is enough to reject a group (``per_element`` shows which).
  Groups larger than the stack cannot be covered and are not eligible; how well the stack
  sits inside them (distinct elements, same worst-case score) is reported in
  ``subset_distances``/``contained_in``. Among eligible candidates with score ≤ ``threshold``
  the largest group wins (ties: smaller score); if none, the answer is ``None``.

  For ``kind="group"`` the matrices are ``n·k²`` wide, so only groups of order ``n`` are
  comparable.

  Choosing ``threshold``: blurring a permutation by ``ε`` towards uniform costs ``≈ ε``,
  distinct elements of the supported groups are ≥ 1.15 apart (k ≥ 3) and a random doubly
  stochastic matrix is ≈ 1 from any permutation. Below ≈ 0.57 (half the smallest gap) at most
  one of two nested groups can pass, so the answer is unambiguous; the default 0.5 accepts
  stacks whose every element keeps most of its mass on the right permutation.

  Args:
    stack: ``[n, d, d]``.
    kernel_size: k (``d = k²`` for lift, ``d = n·k²`` for group).
    kind: ``"lift"`` or ``"group"``.
    threshold: the largest accepted score, > 0.
    groups: candidate names from the registry (``ops.group_spec``), all acting on grids of
      the same rank; default: the exact 2-D groups ``IMAGE_GROUPS``.

  Returns:
    :class:`GroupMatch`.
  """
  array = check_stack(stack, "stack")
  _check_kind(kind)
  kernel_size = check_kernel_size(kernel_size)
  if (not isinstance(threshold, numbers.Real) or isinstance(threshold, bool)
      or not threshold > 0):
    raise ValueError(f"threshold must be a positive number; got {threshold!r}")
  if isinstance(groups, str) or not groups:
    raise ValueError(f"groups must be a non-empty sequence of names from "
                     f"{_groups.GROUP_NAMES}; got {groups!r}")
  for name in groups:
    _check_name(name)
  dims = {_groups.group_spatial_dims(name) for name in groups}
  if len(dims) != 1:
    raise ValueError(f"groups must all act on grids of the same rank; got {groups!r} "
                     f"(ranks {sorted(dims)})")
  _check_stack_for_kind(array, kernel_size, kind, dims.pop())

  n = array.shape[0]
  candidates, subset_distances, details = {}, {}, {}
  for name in groups:
    order = _groups.group_order(name)
    if kind == "group" and order != n:
      candidates[name] = float("inf")
      continue
    result = distance_to_group(array, name, kernel_size, kind)
    details[name] = result
    if order <= n:
      candidates[name] = result.covering_distance
    else:
      candidates[name] = float("inf")
      subset_distances[name] = result.covering_distance

  comparable = [name for name in candidates if np.isfinite(candidates[name])]
  best = min(comparable, key=lambda g: candidates[g]) if comparable else None
  within = [name for name in comparable if candidates[name] <= threshold]
  chosen = (max(within, key=lambda g: (_groups.group_order(g), -candidates[g]))
            if within else None)
  reported = chosen if chosen is not None else best
  contained = tuple(name for name, value in subset_distances.items() if value <= threshold)
  if reported is None:
    assignment = per_element = None
    distance = float("inf")
  else:
    result = details[reported]
    assignment = result.covering_assignment
    per_element = result.cost[np.arange(n), assignment]
    distance = candidates[reported]
  return GroupMatch(name=chosen, distance=distance, threshold=float(threshold),
                    best_candidate=best, candidates=candidates,
                    subset_distances=subset_distances, contained_in=contained,
                    assignment=assignment, per_element=per_element, details=details)


@dataclasses.dataclass(frozen=True)
class CayleyResult:
  """Approximate multiplication table of a learned stack.

  Attributes:
    table: int ``[n, n]``, ``table[a, b] = argmin_c ‖R_a R_b − R_c‖_F / √d``.
    errors: float64 ``[n, n]``, that minimum.
    max_error: ``errors.max()``.
    mean_error: ``errors.mean()``.
  """
  table: np.ndarray
  errors: np.ndarray
  max_error: float
  mean_error: float


def cayley_error(stack) -> CayleyResult:
  """How far a stack is from being closed under multiplication.

  For an exact group representation every product ``R_a R_b`` is another element and all
  errors are 0 (and ``table`` is the Cayley table up to the order of the elements).

  Caveat: a nearly uniform stack (every ``R ≈ J/d``) also has small errors, because ``J/d``
  is idempotent. Read this together with the distance to the nearest permutation.

  Args:
    stack: ``[n, d, d]``.

  Returns:
    :class:`CayleyResult`.
  """
  array = check_stack(stack, "stack")
  n, d = array.shape[0], array.shape[-1]
  products = np.einsum("aij,bjk->abik", array, array).reshape(n * n, d, d)
  distances = pairwise_distances(products, array)                    # [n·n, n]
  table = np.argmin(distances, axis=1)
  errors = distances[np.arange(n * n), table]
  return CayleyResult(table=table.reshape(n, n).astype(np.int64),
                      errors=errors.reshape(n, n), max_error=float(errors.max()),
                      mean_error=float(errors.mean()))
