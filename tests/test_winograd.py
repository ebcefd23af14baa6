"""Winograd's minimal filtering (``ds_symmetry.ops.winograd``): the transforms are the
correlation exactly (rational arithmetic), the float32 convolution is within its stated error
of a float64 numpy re-derivation, and what it refuses."""

import fractions

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ds_symmetry.ops import conv_paths, winograd


@pytest.mark.parametrize("r", range(2, winograd.TILE))
def test_the_transforms_are_the_correlation_exactly(r):
  """``Aᵀ [(G g) ⊙ (Bᵀ d)] = Σ_j d[i + j] g[j]`` in exact rational arithmetic."""
  a_t, g_mat, b_t = winograd.transforms_exact(r)
  n, m = winograd.TILE, winograd.TILE - r + 1
  assert (len(a_t), len(a_t[0]), len(g_mat), len(g_mat[0]), len(b_t)) == (m, n, n, r, n)
  rng = np.random.default_rng(r)
  for _ in range(3):
    d = [fractions.Fraction(int(v)) for v in rng.integers(-9, 10, n)]
    g = [fractions.Fraction(int(v)) for v in rng.integers(-9, 10, r)]
    kernel_side = [sum(row[j] * g[j] for j in range(r)) for row in g_mat]
    input_side = [sum(row[j] * d[j] for j in range(n)) for row in b_t]
    product = [u * v for u, v in zip(kernel_side, input_side)]
    y = [sum(row[k] * product[k] for k in range(n)) for row in a_t]
    assert y == [sum(d[i + j] * g[j] for j in range(r)) for i in range(m)]


def _correlate64(x, w, padding):
  """The convolution in float64 numpy: ``Σ_{a,b} x_pad[:, i + a, j + b] · w[a, b]``."""
  (top, bottom), (left, right) = padding
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
  kh, kw = w.shape[:2]
  ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
  w = np.asarray(w, np.float64)
  return sum(np.einsum("nhwc,co->nhwo", xp[:, a:a + ho, b:b + wo], w[a, b])
             for a in range(kh) for b in range(kw))


@pytest.mark.parametrize("shape, kernel, padding", [
    ((2, 24, 24, 16), (5, 5, 16, 8), ((0, 0), (0, 0))),   # an MNIST inner layer, smaller
    ((3, 13, 11, 4), (3, 5, 4, 5), ((1, 1), (2, 2))),     # uneven tiles, kh != kw
    ((2, 12, 12, 8), (7, 2, 8, 8), ((3, 3), (0, 1))),     # the largest and smallest taps
])
def test_float32_error_against_float64(shape, kernel, padding):
  rng = np.random.default_rng(0)
  x = rng.standard_normal(shape).astype(np.float32)
  w = rng.standard_normal(kernel).astype(np.float32)
  exact = _correlate64(x, w, padding)
  y = np.asarray(jax.jit(winograd.conv_winograd, static_argnums=2)(x, w, padding))
  assert y.shape == exact.shape and y.dtype == np.float32
  scale = np.abs(exact).max()
  error = np.abs(y - exact).max() / scale
  direct = np.asarray(jax.lax.conv_general_dilated(
      x, w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")))
  direct_error = np.abs(direct - exact).max() / scale
  assert error <= 2e-5, error            # the module docstring's "about 1e-5"
  assert error > direct_error            # it is an approximation in float32, not a copy


@pytest.mark.parametrize("r", [1, 8, 11])
def test_kernel_sizes_outside_the_tile_are_refused_in_one_line(r):
  assert not winograd.supports((r, 3))
  with pytest.raises(ValueError) as info:
    winograd.transforms_exact(r)
  assert "\n" not in str(info.value) and f"r={r}" in str(info.value)


def test_the_path_takes_xla_for_kernels_it_cannot_tile():
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
  w = jax.random.normal(jax.random.key(1), (1, 1, 3, 4))
  with conv_paths.conv_path("winograd"):
    text = jax.jit(lambda x, w: conv_paths.convolve(x, w)).lower(x, w).as_text()
    y = conv_paths.convolve(x, w)
  assert "convolution" in text
  np.testing.assert_allclose(y, jnp.einsum("nhwc,co->nhwo", x, w[0, 0]), rtol=1e-5, atol=1e-5)


def _losses_under(path, steps=20):
  """Adam on a small gcnn (16-channel group convolutions) memorising one batch, under
  ``path``: the loss at each step."""
  import optax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel

  from ds_symmetry.models import create_model  # pylint: disable=import-outside-toplevel
  model = create_model("gcnn", num_classes=10, rngs=nnx.Rngs(0), channels=4, num_blocks=2)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  optimizer = optax.adam(1e-2)
  images = jnp.broadcast_to(jax.random.normal(jax.random.key(1), (8, 14, 14, 1)),
                            (steps, 8, 14, 14, 1))   # one batch, memorised
  labels = jnp.broadcast_to(jnp.arange(8) % 10, (steps, 8))

  def loss(params, x, y):
    logits = nnx.merge(graphdef, params, rest)(x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

  def step(carry, batch):
    params, state = carry
    value, grads = jax.value_and_grad(loss)(params, *batch)
    updates, state = optimizer.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), value
  with conv_paths.conv_path(path):
    _, values = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)),
                                               (images, labels)))(params)
  return np.asarray(values)


def test_training_follows_the_same_loss_curve_as_xla():
  """20 Adam steps (lr 1e-2) of a gcnn whose group layers convolve 16 channels: the winograd
  path's losses stay within 1e-4 of XLA's convolution's, step by step."""
  xla, wino = _losses_under("xla"), _losses_under("winograd")
  assert xla[-1] < xla[0] - 0.1                       # it trains
  np.testing.assert_allclose(wino, xla, rtol=1e-4)
