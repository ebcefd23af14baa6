"""Regularisers on representation logits and doubly stochastic stacks, as the reference code
computes them (``WSBase.get_loss`` of the paper's PyTorch code; ``docs/paper_reference.md`` §2).

Pure ``jnp``; both functions return a scalar and are jit-, vmap- and grad-safe. A model sums them
over its weight-sharing layers and adds ``norm_scaler * norm_loss + entropy_scaler * entropy``
to the task loss (released configs: ``norm_scaler = 0.1``, ``entropy_scaler = 0``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ds_symmetry._validation import float_array, square_shape

__all__ = ["norm_loss", "entropy"]

ENTROPY_CLAMP = 1e-16  # the reference clamps S at 1e-16 before the log


def _square_float(name: str, x) -> jax.Array:
  x = float_array(name, x)
  square_shape(name, x.shape)
  return x


def norm_loss(logits: jax.Array) -> jax.Array:
  """Normalisation regulariser on the raw (pre-Sinkhorn) logits.

  ``mean(lse(logits, axis=-2, keepdims=True)**2 + lse(logits, axis=-1, keepdims=True)**2)``:
  the ``[..., 1, n]`` column term and the ``[..., n, 1]`` row term broadcast to ``[..., n, n]``
  before the mean, exactly as the reference code does. It is zero iff ``exp(logits)`` is already
  doubly stochastic, so it pushes the logits' "gauge" (the row/column constants Sinkhorn is
  invariant to) towards the point where a few Sinkhorn rounds suffice.

  Note: the paper prints a different formula, ``1/D sum_i sum_r(R)_i^2 + sum_c(R)_i^2`` with the
  squared row/column sums of the Sinkhorn *output* R; we follow the released code, which uses the
  log-sum-exp of the *logits*. At the paper's init (logits ~ U[0, 1), d = 25) it is ~28.

  Args:
    logits: ``[..., n, n]`` raw representation logits (any leading axes).

  Returns:
    Scalar (0-d array, the logits' dtype).
  """
  logits = _square_float("logits", logits)
  col_lse = logsumexp(logits, axis=-2, keepdims=True)  # [..., 1, n]
  row_lse = logsumexp(logits, axis=-1, keepdims=True)  # [..., n, 1]
  return jnp.mean(col_lse**2 + row_lse**2)  # broadcasts to [..., n, n]


def entropy(S: jax.Array) -> jax.Array:
  """Entropy regulariser ``-sum(S * log(max(S, 1e-16)))`` of a stack of soft permutations.

  A **sum over the whole stack** (all leading axes and entries), not a mean, as in the reference
  code and the paper's ``ent(R) = -sum_ijk R_ijk log R_ijk``. A permutation stack gives 0; the
  uniform ``1/n`` matrix gives ``n log n`` per matrix. The clamp keeps the value and the gradient
  finite at exact zeros (where the gradient is ``-log(1e-16) ~ 36.8``).

  Args:
    S: ``[..., n, n]`` non-negative matrices (typically the output of ``sinkhorn``).

  Returns:
    Scalar (0-d array, ``S``'s dtype).
  """
  S = _square_float("S", S)
  return -jnp.sum(S * jnp.log(jnp.maximum(S, jnp.asarray(ENTROPY_CLAMP, S.dtype))))
