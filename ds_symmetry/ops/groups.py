"""Groups acting on kernel grids: one registry, and the representations derived from it.

**The registry is the one place that defines a group.** Each :class:`GroupSpec` holds the
group's order, the rank of the grid it acts on (1-D signals, 2-D images, 3-D voxels), its
action on such a grid (``apply``) and its Cayley table (derived from the action for groups
that permute grid points, given explicitly otherwise). Everything else — the kernel
representations below, the layers' exact stacks (``nn.WSLiftConv(group=...)``), the analysis
candidates (``analysis.identify_group``) and the test transforms (``ds_symmetry.testing``) —
reads groups from :func:`group_spec`. To add a group, write its action and add one
``register_group(GroupSpec(...))`` call in the block at the end of this file.

Registered groups (``GROUP_NAMES``; ``group_names(spatial_dims=...)`` filters them):

====================  ==========  =====  ==================================================
name                  order       grid   action on a kernel ``K`` (element index ``g``)
====================  ==========  =====  ==================================================
``trivial``           1           2-D    identity
``C2``                2           2-D    ``rot90(K, 2g)``
``C4``                4           2-D    ``rot90(K, g)``
``flip``              2           2-D    ``flip(K, axis=1)`` (left↔right) when ``g = 1``
``D4``                8           2-D    ``g = f*4 + r``: ``rot90(flip^f(K), r)``
``C8``                8           2-D    rotation by ``g·45°``; odd ``g`` by bilinear
                                         interpolation (approximate, see below)
``shift<n>``          n           1-D    ``roll(K, g)`` on a length-``n`` grid (any n ≥ 1;
                                         also on lengths dividing n, not faithfully)
``cube``              24          3-D    the 24 rotations of a cube (axis permutations and
                                         reversals of determinant +1)
``C4xC4``             16          3-D    ``g = 4a + b``: turn the whole grid ``a`` quarter
                                         turns about axis 0, then its last slice ``b`` more
``C4xC4xC4``          64          3-D    ``g = 16a + 4b + c``: turn slices 0, 1, 2 (along
                                         axis 0) by ``a``, ``b``, ``c`` quarter turns
====================  ==========  =====  ==================================================

Rotations of a cube about two different axes do not commute, so they cannot form C4×C4.
``C4xC4`` and ``C4xC4xC4`` are therefore the commuting "layer turns" of a 3×3×3 grid (as on a
Rubik's cube): ``C4xC4`` is the subgroup of ``C4xC4xC4`` with element ``(a, b) ↦ (a, a, a+b)``
(:func:`c4xc4_in_c4xc4xc4`).

Conventions (used everywhere in ``ds_symmetry``):

* A kernel on a grid of shape ``(k,)*D`` is flattened row-major: ``vec(K) = K.reshape(-1)``.
* A *spatial representation* ``L[g]`` of shape ``[k^D, k^D]`` transforms a kernel by ``g``:
  ``L[g] @ vec(K) == vec(g·K)``. For every group except ``C8`` it is a 0/1 permutation.
* ``L`` is a homomorphism: ``L[a] @ L[b] == L[cayley_table(name)[a, b]]`` (for ``C8`` only
  approximately: two interpolated 45° turns are not exactly one 90° turn).
* The regular ("shift-twist") representation used by group convolutions acts on kernels of
  shape ``[G, *grid]`` (input group element major), flattened to ``G·k^D``:
  ``[ρ(g)ψ](h, y) = ψ(g⁻¹h, g⁻¹y)``, i.e. ``ρ(g) = Λ(g) ⊗ L(g)`` with the left-regular
  permutation ``Λ(g)[g·h, h] = 1``.

**C8 is approximate.** 45° rotations do not map a pixel grid onto itself. Odd elements sample
the kernel at the rotated pixel centres with bilinear interpolation (zero outside the grid);
even elements are the exact ``rot90``. So ``L[g]`` for odd ``g`` is neither a permutation nor
orthogonal nor doubly stochastic: ``‖L Lᵀ − I‖_F/√d`` is 0.65 on a 3×3 grid and 0.70 on 5×5
and 7×7 (:func:`orthogonality_error`; a permutation scores 0), its rows sum to at most 1 (the
corners of a 5×5 grid land outside it: 0.17), its columns to up to 1.34, and two odd
elements compose to ``≈ 0.70`` (in ``‖·‖_F/√d``) from the exact even one (``L[1] @ L[1]`` vs
``L[2] = rot90``).

Return types: representations (``spatial_permutations``, ``regular_permutations``,
``shift_twist_permutations``) are float32 ``jnp`` arrays; ``cayley_table`` and
``inverse_indices`` are int32 numpy arrays. Results are cached per (group, kernel size).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from typing import Callable, Dict, Optional, Sequence, Tuple

import jax.numpy as jnp
import numpy as np

Axes = Tuple[int, ...]
Action = Callable[[int, object, Axes], object]


@dataclasses.dataclass(frozen=True)
class GroupSpec:
  """Everything ``ds_symmetry`` knows about a group.

  Attributes:
    name: registry key.
    order: number of elements ``G``; element 0 is the identity.
    spatial_dims: rank ``D`` of the grids it acts on (1, 2 or 3).
    apply: ``apply(g, array, axes)`` transforms a numpy or jax ``array`` by element ``g`` on
      its ``D`` spatial ``axes`` and returns the same kind of array. It must be linear in
      ``array`` (the representations are read off it).
    permutation: whether ``apply`` permutes grid points (exact); ``False`` for interpolated
      actions such as ``C8``.
    cayley: int ``[G, G]`` table, ``cayley[a, b]`` the index of ``a·b`` (``b`` acts first).
      ``None`` derives it from ``apply`` on a grid of side ``faithful_size`` (only for
      ``permutation=True``).
    faithful_size: a grid side on which the action is faithful (distinct elements give
      distinct permutations).
    check_grid: optional ``check_grid(shape)`` raising ``ValueError`` for grid shapes the
      action is not defined on.
    description: one line, for messages and docs.
  """
  name: str
  order: int
  spatial_dims: int
  apply: Action
  permutation: bool = True
  cayley: Optional[np.ndarray] = None
  faithful_size: int = 3
  check_grid: Optional[Callable[[Tuple[int, ...]], None]] = None
  description: str = ""


_REGISTRY: Dict[str, GroupSpec] = {}
_FAMILIES: Dict[str, Callable[[int], GroupSpec]] = {}  # prefix -> factory(n), e.g. shift<n>
_FAMILY_MEMBERS: set = set()                            # names built by a family factory


def register_group(spec: GroupSpec) -> GroupSpec:
  """Adds a group to the registry (see the block at the end of this module)."""
  if not isinstance(spec, GroupSpec):
    raise ValueError(f"spec must be a GroupSpec; got {type(spec).__name__}")
  if spec.spatial_dims not in (1, 2, 3):
    raise ValueError(f"spatial_dims must be 1, 2 or 3; got {spec.spatial_dims!r}")
  if spec.cayley is None and not spec.permutation:
    raise ValueError(f"group {spec.name!r}: an action that is not a permutation needs an "
                     f"explicit cayley table")
  _REGISTRY[spec.name] = spec
  return spec


def group_spec(name) -> GroupSpec:
  """The registered :class:`GroupSpec` of ``name``; raises ValueError for unknown names."""
  if isinstance(name, str):
    if name in _REGISTRY:
      return _REGISTRY[name]
    for prefix, factory in _FAMILIES.items():
      match = re.fullmatch(re.escape(prefix) + r"([1-9][0-9]*)", name)
      if match:
        _FAMILY_MEMBERS.add(name)
        return register_group(factory(int(match.group(1))))
  families = ", ".join(f"{prefix}<n>" for prefix in _FAMILIES)
  raise ValueError(f"group name must be one of {GROUP_NAMES} or {families}; got {name!r}")


def group_names(spatial_dims: Optional[int] = None,
                permutation: Optional[bool] = None) -> Tuple[str, ...]:
  """Registered names (families such as ``shift<n>`` not included), optionally only those
  acting on ``spatial_dims``-D grids and/or only exact permutation groups."""
  return tuple(name for name, spec in _REGISTRY.items()
               if name not in _FAMILY_MEMBERS
               and (spatial_dims is None or spec.spatial_dims == spatial_dims)
               and (permutation is None or spec.permutation == permutation))


def group_order(name: str) -> int:
  """Number of elements of the named group."""
  return group_spec(name).order


def group_spatial_dims(name: str) -> int:
  """Rank of the grids the named group acts on (1, 2 or 3)."""
  return group_spec(name).spatial_dims


def _check_kernel_size(kernel_size) -> int:
  if not isinstance(kernel_size, (int, np.integer)) or isinstance(kernel_size, bool) \
      or kernel_size < 1:
    raise ValueError(f"kernel_size must be a positive int; got {kernel_size!r}")
  return int(kernel_size)


def _check_axes(spec: GroupSpec, array, axes) -> Axes:
  axes = tuple(int(a) for a in axes)
  if len(axes) != spec.spatial_dims:
    raise ValueError(f"axes must name {spec.spatial_dims} spatial axes for group "
                     f"{spec.name!r}; got {axes}")
  shape = tuple(array.shape[a] for a in axes)
  if spec.check_grid is not None:
    spec.check_grid(shape)
  return axes


def apply_element(name: str, index: int, array, axes: Optional[Sequence[int]] = None):
  """Applies element ``index`` of group ``name`` to the spatial ``axes`` of a numpy or jax
  array (default: the first ``D`` axes). Returns the same kind of array."""
  spec = group_spec(name)
  if not isinstance(index, (int, np.integer)) or not 0 <= index < spec.order:
    raise ValueError(f"index must be an int in [0, {spec.order}) for group {name!r}; "
                     f"got {index!r}")
  axes = tuple(range(spec.spatial_dims)) if axes is None else axes
  return spec.apply(int(index), array, _check_axes(spec, array, axes))


def _xp(array):
  return np if isinstance(array, np.ndarray) else jnp


# ------------------------------------------------------------------- representations (derived)


@functools.lru_cache(maxsize=None)
def _spatial_np(name: str, kernel_size: int) -> np.ndarray:
  spec = group_spec(name)
  grid = (kernel_size,) * spec.spatial_dims
  d = kernel_size ** spec.spatial_dims
  basis = np.eye(d, dtype=np.float64).reshape(d, *grid)            # basis[m] = e_m as a grid
  axes = tuple(range(1, spec.spatial_dims + 1))
  reps = np.zeros((spec.order, d, d), dtype=np.float32)
  for g in range(spec.order):
    _check_axes(spec, basis, axes)
    images = np.asarray(spec.apply(g, basis, axes), dtype=np.float64).reshape(d, d)
    reps[g] = images.T                                              # column m = vec(g·e_m)
  return reps


def _table_from_permutations(reps: np.ndarray, name: str) -> np.ndarray:
  lookup = {r.astype(np.int8).tobytes(): g for g, r in enumerate(reps)}
  if len(lookup) != reps.shape[0]:
    raise ValueError(f"group {name!r}: the action is not faithful on its faithful_size grid")
  order = reps.shape[0]
  table = np.zeros((order, order), dtype=np.int32)
  for a in range(order):
    for b in range(order):
      product = (reps[a] @ reps[b]).astype(np.int8).tobytes()
      if product not in lookup:
        raise ValueError(f"group {name!r}: elements {a}·{b} compose to no element (not closed)")
      table[a, b] = lookup[product]
  return table


@functools.lru_cache(maxsize=None)
def _cayley_table_np(name: str) -> np.ndarray:
  spec = group_spec(name)
  if spec.cayley is not None:
    return np.asarray(spec.cayley, dtype=np.int32)
  return _table_from_permutations(_spatial_np(name, spec.faithful_size), name)


def cayley_table(name: str) -> np.ndarray:
  """Group multiplication table: ``table[a, b]`` is the index of ``a·b``. int32 ``[G, G]``."""
  return _cayley_table_np(group_spec(name).name).copy()


def inverse_indices(name: str) -> np.ndarray:
  """``inv[g]`` is the index of ``g⁻¹``. int32 ``[G]``."""
  table = cayley_table(name)
  return np.argmax(table == 0, axis=1).astype(np.int32)


def spatial_permutations(name: str, kernel_size: int) -> jnp.ndarray:
  """The representation of every group element on a kernel grid of side ``k``.

  Args:
    name: a registered group (``GROUP_NAMES``, or ``shift<n>`` with ``k`` dividing ``n``).
    kernel_size: k; the grid is ``(k,)*D`` with ``D = spatial_dims(name)``.

  Returns:
    float32 ``[G, k^D, k^D]`` with ``out[g] @ K.reshape(-1) == (g·K).reshape(-1)``: 0/1
    permutations, except for ``C8`` (bilinear interpolation, see the module docstring).
  """
  spec = group_spec(name)
  return jnp.asarray(_spatial_np(spec.name, _check_kernel_size(kernel_size)))


@functools.lru_cache(maxsize=None)
def _regular_np(name: str) -> np.ndarray:
  table = _cayley_table_np(name)
  order = table.shape[0]
  reps = np.zeros((order, order, order), dtype=np.float32)
  for g in range(order):
    reps[g, table[g], np.arange(order)] = 1.0
  return reps


def regular_permutations(name: str) -> jnp.ndarray:
  """Left-regular representation ``Λ``: float32 ``[G, G, G]`` with ``Λ[g][g·h, h] = 1``."""
  return jnp.asarray(_regular_np(group_spec(name).name))


@functools.lru_cache(maxsize=None)
def _shift_twist_np(name: str, kernel_size: int) -> np.ndarray:
  regular = _regular_np(name)
  spatial = _spatial_np(name, kernel_size)
  return np.stack([np.kron(regular[g], spatial[g]) for g in range(regular.shape[0])])


def shift_twist_permutations(name: str, kernel_size: int) -> jnp.ndarray:
  """Regular representation on group-convolution kernels ``[G, *grid]`` flattened to
  ``G·k^D``.

  Returns:
    float32 ``[G, G·k^D, G·k^D]``; ``out[g] = kron(Λ[g], L[g])``: the spatial part transforms
    every slice, the group part permutes the input-element axis. Kernels built with it
    (``ops.group_kernels``) give an exact group convolution (approximate for ``C8``).
  """
  spec = group_spec(name)
  return jnp.asarray(_shift_twist_np(spec.name, _check_kernel_size(kernel_size)))


def orthogonality_error(name: str, kernel_size: int) -> np.ndarray:
  """``‖L[g] L[g]ᵀ − I‖_F / √d`` for every element: 0 for permutations; how far an
  interpolated action (``C8``) is from orthogonal. float64 ``[G]``."""
  reps = np.asarray(spatial_permutations(name, kernel_size), dtype=np.float64)
  d = reps.shape[-1]
  gram = np.einsum("gij,gkj->gik", reps, reps) - np.eye(d)[None]
  return np.sqrt(np.sum(gram ** 2, axis=(1, 2)) / d)


def c4xc4_in_c4xc4xc4() -> np.ndarray:
  """int ``[16]``: element ``4a + b`` of ``C4xC4`` is element ``embed[4a + b]`` of
  ``C4xC4xC4`` (the same permutation of a 3×3×3 grid)."""
  return np.asarray([16 * a + 4 * a + (a + b) % 4 for a in range(4) for b in range(4)],
                    dtype=np.int64)


# --------------------------------------------------------------------------------- the actions


def _rotate(array, quarter_turns: int, axes: Axes):
  return _xp(array).rot90(array, quarter_turns, axes=axes) if quarter_turns % 4 else array


def _flip(array, axis: int):
  return _xp(array).flip(array, axis=axis)


def _trivial(g, array, axes):
  del g, axes
  return array


def _rotation(step: int) -> Action:
  return lambda g, array, axes: _rotate(array, g * step, axes)


def _mirror(g, array, axes):
  return _flip(array, axes[1]) if g else array


def _dihedral(g, array, axes):
  flip, rotation = divmod(g, 4)
  return _rotate(_mirror(flip, array, axes), rotation, axes)


def _dihedral_subgroup(elements: Tuple[int, ...]) -> Action:
  """The action of the subgroup of ``D4`` whose element ``g`` is ``D4`` element
  ``elements[g]`` (``elements[0] = 0``, the identity)."""
  return lambda g, array, axes: _dihedral(elements[g], array, axes)


@functools.lru_cache(maxsize=None)
def _rotation_45_np(height: int, width: int) -> np.ndarray:
  """``[H·W, H·W]``: bilinear rotation by 45° in the sense of ``rot90`` (zero outside)."""
  c_y, c_x = (height - 1) / 2, (width - 1) / 2
  matrix = np.zeros((height * width, height * width))
  cos = sin = math.sqrt(0.5)
  for y, x in itertools.product(range(height), range(width)):
    # rot90 reads out(y, x) = in(x, −y) in centred coordinates; 45° is half of it.
    dy, dx = y - c_y, x - c_x
    source_y, source_x = c_y + cos * dy + sin * dx, c_x - sin * dy + cos * dx
    y0, x0 = math.floor(source_y), math.floor(source_x)
    for yy, xx in itertools.product((y0, y0 + 1), (x0, x0 + 1)):
      weight = (1 - abs(source_y - yy)) * (1 - abs(source_x - xx))
      if 0 <= yy < height and 0 <= xx < width and weight > 1e-12:
        matrix[y * width + x, yy * width + xx] += weight
  return matrix


def _rotation_45(array, axes: Axes):
  height, width = array.shape[axes[0]], array.shape[axes[1]]
  xp = _xp(array)
  moved = xp.moveaxis(array, axes, (-2, -1))
  flat = moved.reshape(*moved.shape[:-2], height * width)
  matrix = _rotation_45_np(height, width).astype(np.float32 if xp is jnp else flat.dtype)
  rotated = (flat @ xp.asarray(matrix).T).reshape(moved.shape)
  return xp.moveaxis(rotated, (-2, -1), axes)


def _c8(g, array, axes):
  half, odd = divmod(g, 2)
  return _rotate(_rotation_45(array, axes) if odd else array, half, axes)


def _shift_family(n: int) -> GroupSpec:
  def check(shape):
    if len(shape) != 1 or n % shape[0]:
      raise ValueError(f"group 'shift{n}' acts on 1-D grids whose length divides {n} (cyclic "
                       f"shifts; faithfully on length {n}); got a grid of shape {shape}")
  return GroupSpec(name=f"shift{n}", order=n, spatial_dims=1,
                   apply=lambda g, array, axes: _xp(array).roll(array, g, axis=axes[0]),
                   faithful_size=n, check_grid=check,
                   description=f"the {n} cyclic shifts of a length-{n} signal")


def _cube_elements() -> Tuple[Tuple[Tuple[int, int, int], Tuple[bool, bool, bool]], ...]:
  """(axis permutation, reversed axes) of determinant +1, identity first."""
  elements = []
  for perm in itertools.permutations(range(3)):
    parity = sum(perm[i] > perm[j] for i in range(3) for j in range(i + 1, 3)) % 2
    for flips in itertools.product((False, True), repeat=3):
      if (parity + sum(flips)) % 2 == 0:
        elements.append((perm, flips))
  return tuple(elements)


_CUBE = _cube_elements()


def _cube(g, array, axes):
  perm, flips = _CUBE[g]
  xp = _xp(array)
  out = xp.moveaxis(array, [axes[p] for p in perm], list(axes))
  for axis, flipped in zip(axes, flips):
    if flipped:
      out = _flip(out, axis)
  return out


def _check_cube_grid(shape):
  if len(set(shape)) != 1:
    raise ValueError(f"rotations of a cube act on cubic grids (k, k, k); got {shape}")


def _turn_slices(array, turns: Sequence[int], axes: Axes):
  """Turns slice ``i`` along ``axes[0]`` by ``turns[i]`` quarter turns in plane axes[1:]."""
  xp = _xp(array)
  slices = [xp.take(array, xp.asarray([i]), axis=axes[0]) for i in range(len(turns))]
  return xp.concatenate([_rotate(s, t, axes[1:]) for s, t in zip(slices, turns)], axis=axes[0])


def _c4xc4(g, array, axes):
  whole, last = divmod(g, 4)
  size = array.shape[axes[0]]
  return _turn_slices(array, [whole] * (size - 1) + [whole + last], axes)


def _c4xc4xc4(g, array, axes):
  return _turn_slices(array, [g // 16, (g // 4) % 4, g % 4], axes)


def _check_square_slices(shape):
  if shape[1] != shape[2]:
    raise ValueError(f"slice turns need square slices (axes 1 and 2 equal); got {shape}")


def _check_three_slices(shape):
  _check_square_slices(shape)
  if shape[0] != 3:
    raise ValueError(f"C4xC4xC4 turns the 3 slices of a (3, k, k) grid; got {shape}")


# ------------------------------------------------------------------------- the registry block
# One entry per group. A new group needs nothing else: the layers, the analysis and the
# testing transforms read order, action and Cayley table from here.

register_group(GroupSpec("trivial", 1, 2, _trivial, description="the identity"))
register_group(GroupSpec("C2", 2, 2, _rotation(2), description="rotations by 180°"))
register_group(GroupSpec("C4", 4, 2, _rotation(1), description="rotations by 90°"))
register_group(GroupSpec("flip", 2, 2, _mirror, description="identity and left-right flip"))
register_group(GroupSpec("D4", 8, 2, _dihedral, description="rotations by 90° and flips"))
# The other subgroups of D4 (the isometries of the square kernel grid), as D4 elements.
register_group(GroupSpec("flip_ud", 2, 2, _dihedral_subgroup((0, 6)),
                         description="identity and up-down flip"))
register_group(GroupSpec("flip_diagonal", 2, 2, _dihedral_subgroup((0, 5)),
                         description="identity and the mirror in the main diagonal (transpose)"))
register_group(GroupSpec("flip_antidiagonal", 2, 2, _dihedral_subgroup((0, 7)),
                         description="identity and the mirror in the anti-diagonal"))
register_group(GroupSpec("D2", 4, 2, _dihedral_subgroup((0, 2, 4, 6)),
                         description="180° rotation and the left-right and up-down flips"))
register_group(GroupSpec("D2_diagonal", 4, 2, _dihedral_subgroup((0, 2, 5, 7)),
                         description="180° rotation and the two diagonal mirrors"))
register_group(GroupSpec(
    "C8", 8, 2, _c8, permutation=False,
    cayley=(np.arange(8)[:, None] + np.arange(8)[None]) % 8,
    description="rotations by 45° (odd elements interpolated: approximate)"))
register_group(GroupSpec("cube", 24, 3, _cube, check_grid=_check_cube_grid,
                         description="the 24 rotations of a cube"))
register_group(GroupSpec("C4xC4", 16, 3, _c4xc4, check_grid=_check_square_slices,
                         description="turns of a 3-D grid about axis 0 and of its last slice"))
register_group(GroupSpec("C4xC4xC4", 64, 3, _c4xc4xc4, check_grid=_check_three_slices,
                         description="independent turns of the 3 slices of a 3×3×3 grid"))
_FAMILIES["shift"] = _shift_family

GROUP_NAMES = group_names()

# Every subgroup of D4 (the isometry group of the square kernel grid), smallest first: the
# possible answers of ``nn.SubgroupSelector`` and of ``discovery`` on images.
D4_SUBGROUPS = ("trivial", "C2", "flip", "flip_ud", "flip_diagonal", "flip_antidiagonal",
                "C4", "D2", "D2_diagonal", "D4")


@functools.lru_cache(maxsize=None)
def d4_elements(name: str) -> Tuple[int, ...]:
  """The ``D4`` element index (``g = f·4 + r``: ``rot90(flip^f(K), r)``) of every element of
  the subgroup ``name`` of :data:`D4_SUBGROUPS`, in that group's own numbering.

  Read off the actions on a 3×3 grid, so it is checked, not assumed: raises ``ValueError``
  when ``name`` is not a subgroup of D4.
  """
  if name not in D4_SUBGROUPS:
    raise ValueError(f"name: {name!r} is not a subgroup of D4; expected one of {D4_SUBGROUPS}")
  d4 = _spatial_np("D4", 3)
  found = []
  for element in _spatial_np(name, 3):
    matches = [g for g in range(8) if np.array_equal(d4[g], element)]
    found.append(matches[0])
  return tuple(found)
