"""Group pooling as a module: ``[B, H, W, C, G]`` → ``[B, H, W, C]`` (``ops.group_pool``).

Pooling the group axis of an equivariant map gives a map that is invariant to the group's
action on the group axis (and still equivariant in space); follow it with a spatial mean for
fully invariant features, as the paper's models do.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from ds_symmetry.ops.kernels import group_pool


class GroupPool(nnx.Module):
  """Mean or max over the group axis (the last axis)."""

  def __init__(self, mode: str = "mean"):
    group_pool(jnp.zeros((1, 1)), mode)  # validates mode now, not at the first call
    self.mode = mode

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return group_pool(x, self.mode)
