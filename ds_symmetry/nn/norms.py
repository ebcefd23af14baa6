"""Normalisation and pooling modules of the paper's models, for ``[B, H, W, C, G]`` maps.

* :class:`GroupLayerNorm` — per-sample layer norm over (H, W, C, G), no affine (the MNIST
  models; the paper calls it "instance norm", the reference code uses ``layer_norm``).
* :class:`ChannelLayerNorm` — per-sample, per-channel norm over (H, W, G), no affine (inside
  the CIFAR residual blocks; on plain ``[B, H, W, C]`` maps it is ``InstanceNorm2d``).
* :class:`ChannelBatchNorm` — per-channel batch norm over batch, group and space
  (``BatchNorm3d`` on the reference's ``[B, C, G, H, W]``; ``BatchNorm2d`` without a group
  axis). torch's momentum 0.1 is Flax's 0.9; eps 1e-5.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from ds_symmetry.ops.normalization import standardize


class GroupLayerNorm(nnx.Module):
  """Normalises each sample over every non-batch axis. Works on 4-D and 5-D maps."""

  def __init__(self, epsilon: float = 1e-5):
    self.epsilon = epsilon

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return standardize(x, tuple(range(1, x.ndim)), self.epsilon)


class ChannelLayerNorm(nnx.Module):
  """Normalises each sample and channel over space (and the group axis, if present).

  Channel axis: 3 (``[B, H, W, C]`` or ``[B, H, W, C, G]``)."""

  def __init__(self, epsilon: float = 1e-5):
    self.epsilon = epsilon

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    axes = (1, 2) if x.ndim == 4 else (1, 2, 4)
    return standardize(x, axes, self.epsilon)


class ChannelBatchNorm(nnx.Module):
  """Batch norm with one scale/bias/statistic per channel (axis 3 of a 4-D or 5-D map, or
  the last axis of a 2-D ``[B, C]`` input)."""

  def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5,
               rngs: nnx.Rngs):
    self.norm = nnx.BatchNorm(num_features, momentum=momentum, epsilon=epsilon, axis=-1,
                              rngs=rngs)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    if x.ndim == 5:  # [B, H, W, C, G]: statistics over B, H, W and G
      moved = jnp.moveaxis(x, 3, -1)
      return jnp.moveaxis(self.norm(moved), -1, 3)
    return self.norm(x)
