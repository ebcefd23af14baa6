"""Exact permutation representations of small groups on kernel grids.

Conventions (used everywhere in ``ds_symmetry``):

* A k×k kernel ``K`` is flattened row-major: ``vec(K) = K.reshape(-1)`` (index ``y*k + x``).
* A *spatial permutation* ``L[g]`` of shape ``[k², k²]`` transforms a kernel by the group
  element ``g``: ``L[g] @ vec(K) == vec(g·K)``. For rotations ``g·K = jnp.rot90(K, g)``;
  for the flip ``g·K = jnp.flip(K, axis=1)`` (left↔right, "horizontal flip"); for D4 the
  element with index ``f*4 + r`` (``f`` in {0, 1}, ``r`` in {0..3}) is
  ``rot90(flip^f(K), r)``, i.e. first flip, then rotate.
* ``L`` is a group homomorphism: ``L[a] @ L[b] == L[cayley_table(name)[a, b]]``.
* The regular ("shift-twist") representation used by group convolutions acts on kernels of
  shape ``[G, k, k]`` (input group element major, then y, then x), flattened to ``G·k²``:
  ``[ρ(g)ψ](h, y) = ψ(g⁻¹h, g⁻¹y)``, i.e. ``ρ(g) = Λ(g) ⊗ L(g)`` with the left-regular
  permutation ``Λ(g)[g·h, h] = 1``. For C4 this rotates each spatial slice and cyclically
  shifts the group axis, exactly as a regular G-CNN kernel transforms.

Supported groups (``GROUP_NAMES``): ``trivial`` (1 element), ``C2`` (rotations by 180°),
``C4`` (rotations by 90°), ``flip`` (identity and horizontal flip), ``D4`` (8 elements).

All functions return float32 ``jnp`` arrays (0/1 entries) and are cheap: results are cached
as numpy arrays per (group, kernel size).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

GROUP_NAMES = ("trivial", "C2", "C4", "flip", "D4")
_ROTATION_ORDERS = {1: "trivial", 2: "C2", 4: "C4"}
_GROUP_ORDERS = {"trivial": 1, "C2": 2, "C4": 4, "flip": 2, "D4": 8}


def _check_group(name) -> str:
  if name not in _GROUP_ORDERS:
    raise ValueError(f"group name must be one of {GROUP_NAMES}; got {name!r}")
  return name


def _check_kernel_size(kernel_size) -> int:
  if not isinstance(kernel_size, (int, np.integer)) or isinstance(kernel_size, bool) \
      or kernel_size < 1:
    raise ValueError(f"kernel_size must be a positive int; got {kernel_size!r}")
  return int(kernel_size)


def group_order(name: str) -> int:
  """Number of elements of the named group."""
  return _GROUP_ORDERS[_check_group(name)]


def apply_element(name: str, index: int, array, axes: tuple[int, int] = (0, 1)):
  """Applies group element ``index`` of group ``name`` to the two spatial ``axes`` (y, x) of a
  numpy or jax array: rotations are ``rot90``, the flip reverses x (``axes[1]``), D4 element
  ``f*4 + r`` flips first, then rotates. Returns the same kind of array."""
  xp = np if isinstance(array, np.ndarray) else jnp
  if _check_group(name) == "flip":
    return xp.flip(array, axis=axes[1]) if index == 1 else array
  if name == "D4":
    flip, rotation = divmod(index, 4)
    array = xp.flip(array, axis=axes[1]) if flip else array
    return xp.rot90(array, rotation, axes=axes)
  step = 4 // group_order(name)  # C2 rotates by 180°, C4 by 90°
  return xp.rot90(array, index * step, axes=axes)


@functools.lru_cache(maxsize=None)
def _spatial_permutations_np(name: str, kernel_size: int) -> np.ndarray:
  order = group_order(name)
  d = kernel_size * kernel_size
  indices = np.arange(d).reshape(kernel_size, kernel_size)
  reps = np.zeros((order, d, d), dtype=np.float32)
  for g in range(order):
    # (g·K)[p] = K[source[p]], so row p of L[g] selects column source[p].
    source = apply_element(name, g, indices).reshape(-1)
    reps[g, np.arange(d), source] = 1.0
  return reps


@functools.lru_cache(maxsize=None)
def _cayley_table_np(name: str) -> np.ndarray:
  # k = 3 is faithful for every supported group (corners and edges are told apart).
  reps = _spatial_permutations_np(name, 3)
  order = reps.shape[0]
  table = np.zeros((order, order), dtype=np.int32)
  for a in range(order):
    for b in range(order):
      product = reps[a] @ reps[b]
      matches = [c for c in range(order) if np.array_equal(product, reps[c])]
      assert len(matches) == 1, (name, a, b, matches)
      table[a, b] = matches[0]
  return table


def cayley_table(name: str) -> np.ndarray:
  """Group multiplication table: ``table[a, b]`` is the index of ``a·b``. int32 ``[G, G]``."""
  return _cayley_table_np(_check_group(name)).copy()


def inverse_indices(name: str) -> np.ndarray:
  """``inv[g]`` is the index of ``g⁻¹``. int32 ``[G]``."""
  table = cayley_table(name)
  return np.argmax(table == 0, axis=1).astype(np.int32)


def spatial_permutations(name: str, kernel_size: int) -> jnp.ndarray:
  """Permutations of a k×k kernel grid for every element of a group.

  Args:
    name: one of ``GROUP_NAMES``.
    kernel_size: k.

  Returns:
    float32 ``[G, k², k²]`` with ``out[g] @ K.reshape(-1) == (g·K).reshape(-1)``.
  """
  return jnp.asarray(_spatial_permutations_np(_check_group(name),
                                              _check_kernel_size(kernel_size)))


def rotation_permutations(kernel_size: int, order: int = 4) -> jnp.ndarray:
  """Rotations by multiples of 360°/order of a k×k grid, order in {1, 2, 4}.

  Returns:
    float32 ``[order, k², k²]`` with ``P[g] @ K.reshape(-1) == jnp.rot90(K, g*4//order)
    .reshape(-1)``; for order 4 that is ``jnp.rot90(K, g)``.
  """
  if order not in _ROTATION_ORDERS:
    raise ValueError(
        f"order must be one of {sorted(_ROTATION_ORDERS)} (exact rotations of a pixel grid); "
        f"got {order!r}")
  return spatial_permutations(_ROTATION_ORDERS[order], kernel_size)


def flip_permutations(kernel_size: int) -> jnp.ndarray:
  """Identity and horizontal flip (``jnp.flip(K, axis=1)``) of a k×k grid: ``[2, k², k²]``."""
  return spatial_permutations("flip", kernel_size)


def dihedral_permutations(kernel_size: int) -> jnp.ndarray:
  """The 8 elements of D4 on a k×k grid: ``[8, k², k²]``; element ``f*4+r`` is
  ``rot90(flip^f(K), r)``."""
  return spatial_permutations("D4", kernel_size)


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
  return jnp.asarray(_regular_np(_check_group(name)))


@functools.lru_cache(maxsize=None)
def _shift_twist_np(name: str, kernel_size: int) -> np.ndarray:
  regular = _regular_np(name)
  spatial = _spatial_permutations_np(name, kernel_size)
  return np.stack([np.kron(regular[g], spatial[g]) for g in range(regular.shape[0])])


def shift_twist_permutations(name: str, kernel_size: int) -> jnp.ndarray:
  """Regular representation on group-convolution kernels ``[G, k, k]`` flattened to ``G·k²``.

  Returns:
    float32 ``[G, G·k², G·k²]``; ``out[g] = kron(Λ[g], L[g])``: the spatial part rotates
    (or flips) every slice, the group part permutes the input-element axis. Kernels built
    with it (``ops.group_kernels``) give an exact group convolution.
  """
  return jnp.asarray(_shift_twist_np(_check_group(name), _check_kernel_size(kernel_size)))


def compose(first: jnp.ndarray, second: jnp.ndarray) -> jnp.ndarray:
  """Matrix product ``first @ second`` of (stacks of) representations: apply ``second``
  first. Shapes ``[..., d, d]``."""
  if first.shape[-2:] != second.shape[-2:] or first.shape[-1] != first.shape[-2]:
    raise ValueError(
        f"compose needs square matrices of equal size; got first {first.shape}, "
        f"second {second.shape}")
  return jnp.matmul(first, second)


def invert(permutations: jnp.ndarray) -> jnp.ndarray:
  """Inverse of (stacks of) permutation matrices: the transpose. ``[..., d, d]``."""
  if permutations.ndim < 2 or permutations.shape[-1] != permutations.shape[-2]:
    raise ValueError(f"permutations must have shape [..., d, d]; got {permutations.shape}")
  return jnp.swapaxes(permutations, -1, -2)
