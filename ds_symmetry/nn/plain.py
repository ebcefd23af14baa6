"""Ordinary convolution and linear layers with PyTorch's default initialisation.

The paper's CNN baselines, shortcuts and heads are torch ``Conv2d`` / ``Linear`` layers;
torch initialises both weight and bias uniformly in ±1/√fan_in
(``kaiming_uniform_(a=√5)``). Mirroring that keeps our baselines comparable with the
reference's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ds_symmetry.ops import gradients


def _torch_uniform(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def torch_conv(in_features: int, out_features: int, kernel_size: int, *, padding="VALID",
               use_bias: bool = True, compute_dtype=None, rngs: nnx.Rngs) -> nnx.Conv:
  """NHWC ``nnx.Conv`` with torch's default init. ``[B, H, W, C_in]`` → ``[B, H', W', C_out]``.

  Its convolution is ``ops.gradients.conv_general_dilated``: the same values as ``lax``'s, with
  the cheaper input gradient of the weight-sharing layers' convolutions."""
  init = _torch_uniform(in_features * kernel_size * kernel_size)
  return nnx.Conv(in_features, out_features, (kernel_size, kernel_size), padding=padding,
                  use_bias=use_bias, kernel_init=init, bias_init=init, dtype=compute_dtype,
                  conv_general_dilated=gradients.conv_general_dilated, rngs=rngs)


def torch_linear(in_features: int, out_features: int, *, use_bias: bool = True,
                 rngs: nnx.Rngs) -> nnx.Linear:
  """``nnx.Linear`` with torch's default init (acts on the last axis)."""
  init = _torch_uniform(in_features)
  return nnx.Linear(in_features, out_features, use_bias=use_bias, kernel_init=init,
                    bias_init=init, rngs=rngs)


class ChannelLinear(nnx.Module):
  """A 1×1 convolution written as a linear map over the channel axis (axis 3), shared over
  space and the group axis: ``[B, H, W, C_in(, G)]`` → ``[B, H, W, C_out(, G)]``."""

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
    self.linear = torch_linear(in_features, out_features, rngs=rngs)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    if x.ndim == 5:
      return jnp.moveaxis(self.linear(jnp.moveaxis(x, 3, -1)), -1, 3)
    return self.linear(x)
