"""What each normalisation module computes, against numpy written from its definition."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ds_symmetry import ops
from ds_symmetry.nn.norms import ChannelBatchNorm, ChannelLayerNorm, GroupLayerNorm

EPS = 1e-5


def _maps(shape, seed=0):
  rng = np.random.default_rng(seed)
  # Per-channel offsets and scales, so a norm over the wrong axes gives visibly wrong output.
  offsets = rng.normal(0, 3, shape[3:4] + (1,) * (len(shape) - 4))
  scales = rng.uniform(0.5, 4, shape[3:4] + (1,) * (len(shape) - 4))
  return (rng.normal(size=shape) * scales + offsets).astype(np.float32)


def _standardized(x, axes):
  mean = x.mean(axis=axes, keepdims=True)
  var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)  # biased, as torch's layer_norm
  return (x - mean) / np.sqrt(var + EPS)


@pytest.mark.parametrize("shape", [(3, 6, 5, 4), (3, 6, 5, 4, 2)])
def test_group_layer_norm_is_per_sample_over_every_other_axis(shape):
  x = _maps(shape)
  out = np.asarray(GroupLayerNorm()(jnp.asarray(x)))
  np.testing.assert_allclose(out, _standardized(x, tuple(range(1, x.ndim))), atol=1e-5)
  # Each sample is normalised on its own: scaling one sample changes nothing.
  x_scaled = x.copy()
  x_scaled[0] *= 10.0
  np.testing.assert_allclose(np.asarray(GroupLayerNorm()(jnp.asarray(x_scaled))), out, atol=1e-4)


@pytest.mark.parametrize("shape, axes", [((3, 6, 5, 4), (1, 2)), ((3, 6, 5, 4, 2), (1, 2, 4))])
def test_channel_layer_norm_is_per_sample_and_channel(shape, axes):
  x = _maps(shape)
  out = np.asarray(ChannelLayerNorm()(jnp.asarray(x)))
  np.testing.assert_allclose(out, _standardized(x, axes), atol=1e-5)
  # Unlike the group layer norm, every channel ends with zero mean and unit variance.
  np.testing.assert_allclose(out.mean(axis=axes), 0.0, atol=1e-5)
  assert not np.allclose(np.asarray(GroupLayerNorm()(jnp.asarray(x))).mean(axis=axes), 0.0,
                         atol=1e-2)


def test_standardize_keeps_bfloat16_but_computes_statistics_in_float32():
  x = _maps((2, 4, 4, 3)) + 300.0  # large offset: bf16 statistics would lose the signal
  out = ops.standardize(jnp.asarray(x, jnp.bfloat16), (1, 2))
  assert out.dtype == jnp.bfloat16
  reference = _standardized(np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32), (1, 2))
  np.testing.assert_allclose(np.asarray(out, np.float32), reference, atol=0.05)


def test_channel_batch_norm_train_statistics_and_running_averages():
  x = _maps((4, 3, 3, 2, 4))   # [B, H, W, C, G]: statistics over B, H, W and G per channel
  norm = ChannelBatchNorm(2, rngs=nnx.Rngs(0))
  norm.train()
  out = np.asarray(norm(jnp.asarray(x)))
  axes = (0, 1, 2, 4)
  np.testing.assert_allclose(out, _standardized(x, axes), atol=1e-4)  # scale 1, bias 0 at init
  # torch's momentum 0.1: running = 0.9 · running + 0.1 · batch (unbiased variance in torch,
  # biased in Flax; the mean is what the momentum convention decides).
  np.testing.assert_allclose(np.asarray(norm.norm.mean.get_value()),
                             0.1 * x.mean(axis=axes), rtol=1e-4, atol=1e-6)
  norm.eval()
  running_mean = np.asarray(norm.norm.mean.get_value())[None, None, None, :, None]
  running_var = np.asarray(norm.norm.var.get_value())[None, None, None, :, None]
  expected = (x - running_mean) / np.sqrt(running_var + EPS)
  np.testing.assert_allclose(np.asarray(norm(jnp.asarray(x))), expected, atol=1e-4)


def test_channel_batch_norm_on_plain_and_flat_inputs():
  norm = ChannelBatchNorm(3, rngs=nnx.Rngs(0))
  norm.train()
  for shape, axes in (((4, 5, 5, 3), (0, 1, 2)), ((6, 3), (0,))):
    x = _maps(shape) if len(shape) == 4 else np.random.default_rng(1).normal(
        2.0, 3.0, shape).astype(np.float32)
    np.testing.assert_allclose(np.asarray(norm(jnp.asarray(x))), _standardized(x, axes),
                               atol=1e-4)
