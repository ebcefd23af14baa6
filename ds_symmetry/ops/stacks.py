"""Learned representation stacks from their free parameters: pure jnp functions.

The stack parameterisations of ``ds_symmetry.nn.stacks`` own the parameters; the arithmetic
that turns parameters into matrices lives here, jit-, vmap- and grad-safe:

* :func:`init_logits`: the initial free logits ``[n, d, d]`` of ``n`` learned matrices;
* :func:`row_softmax`: row-stochastic matrices (each row a softmax);
* :func:`with_identity`: prepends the fixed identity element to ``n`` learned matrices;
* :func:`isometry_blend`: convex blends of the square kernel grid's 8 isometries;
* :func:`generator_powers`: ``[B, B², …]`` of one generator;
* :func:`power_blend`: the blend of the powers of candidate isometry generators;
* :func:`kronecker_stack`: the materialised stack ``A_g ⊗ B_g`` of Kronecker factors.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from ds_symmetry.ops import groups as groups_ops
from ds_symmetry.ops import structure as structure_ops
from ds_symmetry.ops.sinkhorn import sinkhorn

LOGITS_INITS = ("uniform", "balanced_uniform", "normal", "kaiming_uniform", "identity", "zeros")


def init_logits(key: jax.Array, shape: tuple[int, int, int], mode: str,
                identity_scale: float) -> jnp.ndarray:
  """Initial free logits of ``n`` learned ``[d, d]`` matrices.

  Args:
    key: a ``jax.random`` key.
    shape: ``(n, d, d)``.
    mode: one of :data:`LOGITS_INITS`: ``"uniform"`` (U[0, 1), the reference),
      ``"balanced_uniform"`` (the same Sinkhorn output with log row/column sums ≈ 0),
      ``"normal"`` (N(0, 1)), ``"kaiming_uniform"`` (U(±1/d)), ``"identity"``
      (``identity_scale·I`` plus U[0, 1) noise) or ``"zeros"``.
    identity_scale: the diagonal's offset for ``"identity"``.

  Returns:
    float32 ``[n, d, d]``.
  """
  n, d, _ = shape
  del n
  if mode == "uniform":
    return jax.random.uniform(key, shape, jnp.float32)
  if mode == "balanced_uniform":
    # Same Sinkhorn output as "uniform" (Sinkhorn ignores row/column constants), but the
    # logits start with log row/column sums ≈ 0, where the norm regulariser is ≈ 0.
    return jnp.log(sinkhorn(jax.random.uniform(key, shape, jnp.float32), num_iters=50))
  if mode == "normal":
    return jax.random.normal(key, shape, jnp.float32)
  if mode == "kaiming_uniform":
    bound = 1.0 / d  # gain √(1/3) · √(3 / fan_in), fan_in = d·d
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)
  if mode == "identity":
    noise = jax.random.uniform(key, shape, jnp.float32)
    return noise + identity_scale * jnp.eye(d, dtype=jnp.float32)[None]
  if mode == "zeros":
    return jnp.zeros(shape, jnp.float32)
  raise ValueError(f"logits_init must be one of {LOGITS_INITS}; got {mode!r}")


def row_softmax(logits: jnp.ndarray, tau: float) -> jnp.ndarray:
  """Row-stochastic matrices ``softmax(logits / tau)`` over the last axis: ``[n, d, d]`` →
  ``[n, d, d]``."""
  return jax.nn.softmax(logits / tau, axis=-1)


def with_identity(learned: Optional[jnp.ndarray], size: int, fix_identity: bool) -> jnp.ndarray:
  """A stack from its learned elements.

  Args:
    learned: ``[n, size, size]`` or ``None`` (no learned element).
    size: the matrices' side ``d``.
    fix_identity: whether element 0 is the fixed ``[d, d]`` identity.

  Returns:
    ``[n + 1, d, d]`` (identity first) with ``fix_identity``, else ``learned``; the identity
    alone (``[1, d, d]``) when ``learned`` is ``None``.
  """
  parts = [jnp.eye(size, dtype=jnp.float32)[None]] if fix_identity else []
  if learned is not None:
    parts.append(learned)
  return jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def isometry_blend(weights: jnp.ndarray, kernel_size: int, tau: float) -> jnp.ndarray:
  """Convex blends ``Σ_j softmax(weights / tau)_j P_j`` of the 8 isometries ``P_j`` of the
  ``k×k`` grid (``ops.groups.spatial_permutations("D4", k)``).

  Args:
    weights: free weights ``[n, 8]``.
    kernel_size: ``k``.
    tau: the softmax temperature.

  Returns:
    ``[n, k², k²]`` doubly stochastic matrices.
  """
  mix = jax.nn.softmax(weights / tau, axis=-1)
  return jnp.einsum("nj,jab->nab", mix, groups_ops.spatial_permutations("D4", kernel_size))


def generator_powers(generator: jnp.ndarray, num_powers: int) -> jnp.ndarray:
  """``[B, B², …, B^num_powers]`` of the one generator ``B`` in ``generator [1, d, d]``:
  ``[num_powers, d, d]`` (``num_powers ≥ 1``)."""
  matrix = generator[0]
  powers = [generator[0]]
  for _ in range(num_powers - 1):
    powers.append(powers[-1] @ matrix)
  return jnp.stack(powers)


def power_blend(weights: jnp.ndarray, kernel_size: int, num_elements: int,
                candidates: Sequence[int], tau: float) -> jnp.ndarray:
  """Elements ``m = 1 … G−1`` of ``Σ_j w_j P_j^m`` with ``w = softmax(weights / tau)``.

  Args:
    weights: free weights ``[C]``, one per candidate generator.
    kernel_size: ``k``.
    num_elements: ``G`` (element 0, the identity, is not returned).
    candidates: ``C`` indices into ``ops.groups.spatial_permutations("D4", k)``.
    tau: the softmax temperature.

  Returns:
    ``[G − 1, k², k²]``.
  """
  mix = jax.nn.softmax(weights / tau)
  powers = structure_ops.isometry_powers(kernel_size, num_elements)  # [G, 8, d, d]
  powers = powers[1:, jnp.asarray(candidates)]
  return jnp.einsum("j,mjab->mab", mix, powers)


def kronecker_stack(group_factors: jnp.ndarray, spatial_factors: jnp.ndarray) -> jnp.ndarray:
  """The stack ``R_g = A_g ⊗ B_g``: ``A [G, G, G]`` and ``B [G, s, s]`` → ``[G, G·s, G·s]``.

  Layers build their kernels from the factors (``ops.structure.kronecker_group_kernels``); this
  materialised stack is for inspection and regularisation.
  """
  g, s = group_factors.shape[0], spatial_factors.shape[-1]
  size = group_factors.shape[-1] * s
  return jnp.einsum("gab,gmn->gambn", group_factors, spatial_factors).reshape(g, size, size)
