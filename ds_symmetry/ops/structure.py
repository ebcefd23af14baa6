"""Structured weight sharing: factorised group-convolution stacks and geometric priors.

The paper's group convolution learns one ``[G·k², G·k²]`` matrix per element and layer, with
nothing tying it to the lifting layer or to the other layers. The exact regular
(shift-twist) representation has far more structure: ``ρ(g) = Λ(g) ⊗ L(g)``, a permutation
``Λ(g)`` of the ``G`` input elements times a permutation ``L(g)`` of the ``k²`` kernel pixels,
where ``L`` is the lifting layer's representation and ``Λ`` follows from how the elements
compose (``Λ(g)[g·h, h] = 1``). This module holds the pure functions for learning that structure:

* :func:`kronecker_group_kernels` builds a group-convolution kernel from ``A [G, G, G]`` and
  ``B [G, k², k²]`` with small einsums, never materialising ``A_g ⊗ B_g``
  (``[G, G·k², G·k²]``). With exact factors it equals ``kernels.group_kernels`` of the
  shift-twist stack. A Kronecker product of doubly stochastic matrices is doubly stochastic.
* :func:`soft_cayley_factors` derives ``A`` from a (soft) spatial stack ``B``: ``A_g[h, q]`` is
  large when ``B_g B_q ≈ B_h``. For an exact group it *is* the left-regular representation in
  the stack's own labelling of the elements, so a network that learns only ``B`` is a G-CNN as
  soon as ``B`` is a group.
* :func:`isometry_loss` is a geometric prior on spatial stacks: ``‖B D − D B‖²`` with ``D`` the
  squared distances between kernel pixels. A permutation commutes with ``D`` exactly when it
  preserves every pixel distance, i.e. when it is an isometry of the square grid (one of the 8
  elements of D4; for k = 1 every permutation). The loss is convex in ``B``, zero on the convex
  hull of those isometries, and says nothing about *which* of them (rotations, flips, the
  identity) a layer should use: that is left to the data.
* :func:`isometry_powers`, :func:`distinct_cyclic_generators` and :func:`cyclic_shifts` build
  a lifting stack from powers of candidate generators and tie group layers to it by the
  exponents' composition law (``WSLiftConv(elements="power_blend")``,
  ``WSGroupConv(factorise="kronecker", tie="cyclic")``).
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from ds_symmetry.ops.groups import spatial_permutations
from ds_symmetry.ops.sinkhorn import sinkhorn


def _check_stack(name: str, value, size=None) -> None:
  if value.ndim != 3 or value.shape[1] != value.shape[2]:
    raise ValueError(f"{name} must have shape [G, d, d]; got {tuple(value.shape)}")
  if size is not None and value.shape[-1] != size:
    raise ValueError(f"{name} must have matrices of size {size}; got {tuple(value.shape)}")


def kronecker_group_kernels(group_factors: jnp.ndarray, spatial_factors: jnp.ndarray,
                            weight: jnp.ndarray) -> jnp.ndarray:
  """Group-convolution kernel stack with ``R_g = A_g ⊗ B_g``.

  Args:
    group_factors: ``A`` ``[G, G, G]``; ``A_g`` acts on the input-element axis.
    spatial_factors: ``B`` ``[G, k², k²]``; ``B_g`` acts on the flattened k×k kernel.
    weight: ``[C_out, C_in, G·k²]`` canonical kernels flattened as ``(g_in, y, x)``.

  Returns:
    HWIO kernel ``[k, k, C_in·G, C_out·G]``, equal to
    ``kernels.group_kernels(stack([kron(A_g, B_g) for g]), weight)``:
    ``out[y, x, i·G+h, o·G+g] = Σ_{q, m} A[g, h, q] · B[g, (y, x), m] · weight[o, i, q·k²+m]``.
    Cost ``O(C_out·C_in·(G²k⁴ + G³k²))`` instead of ``O(C_out·C_in·G³k⁴)``.
  """
  _check_stack("group_factors", group_factors)
  group = group_factors.shape[0]
  _check_stack("spatial_factors", spatial_factors)
  if group_factors.shape[1] != group or spatial_factors.shape[0] != group:
    raise ValueError(f"group_factors {tuple(group_factors.shape)} must be [G, G, G] and "
                     f"spatial_factors {tuple(spatial_factors.shape)} [G, k², k²] with the same "
                     f"G")
  d = spatial_factors.shape[-1]
  k = math.isqrt(d)
  if k * k != d:
    raise ValueError(f"spatial_factors must act on a flattened k×k kernel; got size {d}")
  if weight.ndim != 3 or weight.shape[-1] != group * d:
    raise ValueError(f"weight must have shape [C_out, C_in, {group * d}] to match the factors; "
                     f"got {tuple(weight.shape)}")
  c_out, c_in, _ = weight.shape
  dtype = weight.dtype
  weight = weight.reshape(c_out, c_in, group, d)                               # (o, i, q, m)
  spatial = jnp.einsum("gnm,oiqm->goiqn", spatial_factors.astype(dtype), weight)
  stack = jnp.einsum("ghq,goiqn->nihog", group_factors.astype(dtype), spatial)
  return stack.reshape(k, k, c_in * group, c_out * group)


def soft_cayley_factors(spatial_stack: jnp.ndarray, temperature: float = 0.05,
                        num_iters: int = 20) -> jnp.ndarray:
  """The regular-representation factors ``A`` implied by a spatial stack ``B``.

  ``A_g = sinkhorn(−c_g / temperature)`` with ``c_g[h, q] = ‖B_g B_q − B_h‖²_F / d``: row ``h``
  (output element), column ``q`` (input element). For exact permutations forming a group
  (in any order of the elements), ``c_g[h, q] = 0`` exactly when ``B_g B_q = B_h``; otherwise
  it is ``2m/d`` for products that differ from ``B_h`` in ``m`` pixels (≥ 1.6 between distinct
  grid symmetries of a 5×5 kernel). At a small temperature ``A_g`` is therefore the
  left-regular permutation ``Λ(g)[g·q, q] = 1`` in the stack's labelling. For blurred
  stacks it is a soft version of it, and gradients flow into ``B``.

  Args:
    spatial_stack: ``[G, d, d]`` (soft) permutations of the kernel grid.
    temperature: > 0, in units of the normalised squared distance.
    num_iters: Sinkhorn rounds.

  Returns:
    ``[G, G, G]`` doubly stochastic factors.
  """
  _check_stack("spatial_stack", spatial_stack)
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0; got {temperature!r}")
  d = spatial_stack.shape[-1]
  products = jnp.einsum("gij,qjk->gqik", spatial_stack, spatial_stack)        # B_g B_q
  # ‖P − B_h‖² = ‖P‖² − 2⟨P, B_h⟩ + ‖B_h‖², for every (g, q, h).
  cross = jnp.einsum("gqik,hik->ghq", products, spatial_stack)
  product_norms = jnp.sum(products ** 2, axis=(-2, -1))                        # [g, q]
  stack_norms = jnp.sum(spatial_stack ** 2, axis=(-2, -1))                     # [h]
  cost = (product_norms[:, None, :] - 2.0 * cross + stack_norms[None, :, None]) / d
  return sinkhorn(-cost / temperature, num_iters=num_iters)


@functools.lru_cache(maxsize=None)
def _grid_squared_distances(kernel_size: int) -> np.ndarray:
  y, x = np.divmod(np.arange(kernel_size * kernel_size), kernel_size)
  distances = (y[:, None] - y[None, :]) ** 2 + (x[:, None] - x[None, :]) ** 2
  scale = max(1, 2 * (kernel_size - 1) ** 2)  # the largest squared distance (corner to corner)
  return (distances / scale).astype(np.float32)


def grid_squared_distances(kernel_size: int) -> jnp.ndarray:
  """``D [k², k²]``: squared Euclidean distances between the pixels of a k×k grid (row-major),
  divided by the largest one so entries lie in [0, 1]."""
  if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1:
    raise ValueError(f"kernel_size must be a positive int; got {kernel_size!r}")
  return jnp.asarray(_grid_squared_distances(kernel_size))


def isometry_loss(spatial_stack: jnp.ndarray) -> jnp.ndarray:
  """How far a stack of spatial (soft) permutations is from the grid's isometries.

  ``mean_g ‖B_g D − D B_g‖²_F / d`` with ``D = grid_squared_distances(k)``. Zero for any
  convex combination of the grid's isometries (rotations by multiples of 90° and flips), so
  it restricts *where* the stack can go (geometric maps) without naming a group; any other
  permutation of the pixels scores > 0.

  Args:
    spatial_stack: ``[G, k², k²]``.

  Returns:
    Scalar float32.
  """
  _check_stack("spatial_stack", spatial_stack)
  d = spatial_stack.shape[-1]
  k = math.isqrt(d)
  if k * k != d:
    raise ValueError(f"spatial_stack must act on a flattened k×k kernel; got size {d}")
  distances = grid_squared_distances(k).astype(spatial_stack.dtype)
  commutator = (jnp.einsum("gij,jk->gik", spatial_stack, distances)
                - jnp.einsum("ij,gjk->gik", distances, spatial_stack))
  return jnp.mean(jnp.sum(commutator ** 2, axis=(-2, -1))) / d


def cyclic_shifts(order: int) -> jnp.ndarray:
  """``[n, n, n]`` with ``out[m, (m + q) mod n, q] = 1``: the regular representation of the
  exponents of one generator (``g^m g^q = g^{m+q}``), the composition law of any stack of
  powers ``[I, B, …, B^{n−1}]`` with ``B^n = I``."""
  if not isinstance(order, int) or isinstance(order, bool) or order < 1:
    raise ValueError(f"order must be a positive int; got {order!r}")
  rows = (np.arange(order)[:, None] + np.arange(order)[None, :]) % order  # [m, q] -> m + q
  shifts = np.zeros((order, order, order), np.float32)
  shifts[np.arange(order)[:, None], rows, np.arange(order)[None, :]] = 1.0
  return jnp.asarray(shifts)


@functools.lru_cache(maxsize=None)
def _isometry_powers(kernel_size: int, num_powers: int) -> np.ndarray:
  isometries = np.asarray(spatial_permutations("D4", kernel_size), dtype=np.float64)
  powers = [np.broadcast_to(np.eye(kernel_size * kernel_size), isometries.shape)]
  for _ in range(num_powers - 1):
    powers.append(powers[-1] @ isometries)
  return np.stack(powers).astype(np.float32)


@functools.lru_cache(maxsize=None)
def distinct_cyclic_generators(kernel_size: int, num_powers: int) -> tuple[int, ...]:
  """Indices (into the 8 grid isometries) of one generator per distinct cyclic stack.

  Two isometries are the same candidate when their powers ``{P^0, …, P^{n−1}}`` are the same
  set of matrices (e.g. the rotations by 90° and by 270° for ``n = 4``: the same four
  rotations, listed in opposite orders); the first in ``spatial_permutations("D4", k)`` order
  is kept. Blending such duplicates would leave a tie that no first-order signal breaks
  (they receive identical gradients from a relabelling-symmetric start)."""
  powers = _isometry_powers(kernel_size, num_powers)  # [n, 8, d, d]
  seen, kept = set(), []
  for j in range(powers.shape[1]):
    members = frozenset(np.round(powers[m, j]).astype(np.int8).tobytes()
                        for m in range(num_powers))
    if members not in seen:
      seen.add(members)
      kept.append(j)
  return tuple(kept)


def isometry_powers(kernel_size: int, num_powers: int) -> jnp.ndarray:
  """``[n, 8, k², k²]``: ``out[m, j] = P_j^m`` for the 8 isometries ``P_j`` of the k×k grid
  (``ops.groups.spatial_permutations("D4", k)``, in that order) and ``m = 0 … n−1``.

  A blend ``Σ_j w_j P_j^m`` over ``m`` is the expected stack of powers of a generator drawn
  from ``w`` (``WSLiftConv(elements="power_blend")``)."""
  for name, value in (("kernel_size", kernel_size), ("num_powers", num_powers)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f"{name} must be a positive int; got {value!r}")
  return jnp.asarray(_isometry_powers(kernel_size, num_powers))


def disk_mask(kernel_size: int) -> jnp.ndarray:
  """``[k²]`` 0/1 mask of the k×k pixels within distance ``k/2`` of the centre.

  The reference's G-CNN (its ``se2cnn`` package) zeroes every kernel pixel outside this disk
  (for odd k: the corners, e.g. 4 of 25 pixels at k = 5). A 90° rotation maps the disk onto
  itself, so C4 kernels built from masked canonical kernels stay masked.
  """
  if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1:
    raise ValueError(f"kernel_size must be a positive int; got {kernel_size!r}")
  centre = (kernel_size - 1) / 2.0
  y, x = np.divmod(np.arange(kernel_size * kernel_size), kernel_size)
  radius = np.sqrt((y - centre) ** 2 + (x - centre) ** 2)
  return jnp.asarray((radius <= kernel_size / 2.0).astype(np.float32))
