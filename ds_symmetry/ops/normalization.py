"""Parameter-free normalisation and pooling used by the paper's models (pure jnp)."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from ds_symmetry.ops.gradients import standardize_fused


def standardize(x: jnp.ndarray, axes: Sequence[int], epsilon: float = 1e-5) -> jnp.ndarray:
  """Rescales ``x`` to zero mean and unit variance over ``axes``, using its own statistics:
  ``(x - mean) / sqrt(var + eps)`` (biased variance, no affine), as torch's ``layer_norm`` /
  ``instance_norm`` without weights. Statistics are computed in float32; the result has
  ``x``'s dtype. (``data.transforms.normalize`` instead applies fixed dataset statistics.)

  Args:
    x: any shape.
    axes: the axes the statistics are taken over (kept as size-1 axes, then broadcast).
    epsilon: added to the variance.

  Returns:
    An array of ``x``'s shape and dtype.
  """
  dtype = x.dtype
  # Its backward is the closed form (two reductions, one pass), ops.gradients.
  return standardize_fused(x.astype(jnp.float32), tuple(axes), epsilon).astype(dtype)


def spatial_max_pool(x: jnp.ndarray, window: int = 2) -> jnp.ndarray:
  """Max pool over H and W (axes 1, 2) with stride = window, 'VALID' (floors odd sizes, as
  torch's ``MaxPool2d``). ``x``: ``[B, H, W, ...]``."""
  dims = (1, window, window) + (1,) * (x.ndim - 3)
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, dims, "VALID")
