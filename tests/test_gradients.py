"""The hand-written backward passes (``ds_symmetry.ops.gradients``) against JAX's own, down to
a whole training step: same values to float32 rounding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ds_symmetry.data import make_protocol
from ds_symmetry.models import create_model
from ds_symmetry.nn import parameter_groups
from ds_symmetry.nn.plain import torch_conv
from ds_symmetry.ops import gradients
from ds_symmetry.ops.kernels import conv2d
from ds_symmetry.ops.normalization import standardize
from ds_symmetry.train import base_config, make_mesh
from ds_symmetry.train import steps


def _both(fn, *args):
  """``fn(*args)`` traced with and without the hand-written backward passes."""
  custom = fn(*args)
  with gradients.custom_gradients(False):
    plain = fn(*args)
  return custom, plain


def _assert_close(a, b, rtol=1e-5):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    scale = max(np.abs(y).max(), 1e-30)
    np.testing.assert_allclose(x, y, atol=rtol * scale, rtol=0)


@pytest.mark.parametrize("shape, k, padding", [
    ((2, 12, 11, 3), 5, "VALID"), ((2, 12, 11, 3), 5, "SAME"), ((2, 9, 10, 2), 4, "SAME"),
    ((2, 8, 8, 2), 3, 2), ((2, 6, 7, 2), 7, "SAME"), ((1, 5, 5, 1), 5, "VALID"),
    ((2, 4, 6, 2), 3, 5)])  # padding wider than the kernel: rows that see no gradient
def test_convolution_gradients_match_jax(shape, k, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  w = jnp.asarray(rng.standard_normal((k, k, shape[-1], 4)), jnp.float32)

  def loss(x, w):
    y = conv2d(x, w, padding)
    return jnp.sum(y * jnp.sin(y))

  (value, grads), (plain_value, plain_grads) = _both(
      jax.jit(jax.value_and_grad(loss, (0, 1))), x, w)
  np.testing.assert_allclose(value, plain_value, rtol=1e-6)
  _assert_close(grads, plain_grads)
  assert grads[0].shape == x.shape and grads[1].shape == w.shape


def test_convolution_in_bfloat16_keeps_its_dtypes():
  x = jnp.ones((2, 8, 8, 3), jnp.float32)
  w = jnp.full((3, 3, 3, 2), 0.1, jnp.float32)
  dx, dw = jax.grad(lambda x, w: jnp.sum(conv2d(x, w, compute_dtype=jnp.bfloat16)), (0, 1))(x, w)
  assert dx.dtype == jnp.float32 and dw.dtype == jnp.float32
  np.testing.assert_allclose(dw, 36.0 * np.ones((3, 3, 3, 2)) * 2, rtol=1e-2)


def test_standardize_gradient_matches_jax():
  x = jnp.asarray(np.random.default_rng(1).normal(2.0, 3.0, (3, 4, 5, 6, 2)), jnp.float32)
  for axes in ((1, 2, 4), (1, 2, 3, 4), (-1,)):
    fn = jax.jit(jax.grad(lambda x, axes=axes: jnp.sum(jnp.sin(standardize(x, axes)))))
    custom, plain = _both(fn, x)
    _assert_close(custom, plain)


def test_plain_conv_layer_uses_the_same_convolution_and_falls_back_to_lax():
  layer = torch_conv(3, 4, 5, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
  kernel = layer.kernel[...]
  expected = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                          dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(layer(x), expected + layer.bias[...], rtol=1e-6, atol=1e-6)
  strided = gradients.conv_general_dilated(x, kernel, (2, 2), "VALID",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(strided, expected[:, ::2, ::2], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["cnn", "wscnn"])
def test_one_train_step_matches_the_plain_autodiff_step(name):
  """The trainer's whole step (augmentation, forward, backward, AdamW) with the hand-written
  backward passes gives the parameters and metrics of JAX's own gradients."""
  rng = np.random.default_rng(0)
  arrays = (rng.integers(0, 256, (8, 28, 28, 1), dtype=np.uint8),
            rng.integers(0, 10, (8,), dtype=np.int32),
            rng.integers(0, 256, (2, 28, 28, 1), dtype=np.uint8),
            rng.integers(0, 10, (2,), dtype=np.int32))
  protocol = make_protocol("rotated_mnist", arrays=arrays)
  mesh = make_mesh()
  images, labels = jnp.asarray(protocol.train_images), jnp.asarray(protocol.train_labels)
  indices = jnp.arange(4, dtype=jnp.int32)
  config = base_config()
  config.entropy_weight = 0.01

  def one_step():
    model = create_model(name, num_classes=10, rngs=nnx.Rngs(0), channels=4, num_blocks=2)
    tx = steps.make_optimizer(config, parameter_groups(model), 100)
    train = steps.Steps(steps.TrainState(model, tx), protocol.augment, seed=0,
                        weights=steps.regularizer_weights(config), mesh=mesh)
    state, metrics = train.train(train.initial_state, images, labels, indices)
    return steps.Steps.checkpoint(state), metrics

  (custom_state, custom_metrics), (plain_state, plain_metrics) = _both(one_step)
  _assert_close(custom_metrics, plain_metrics, rtol=1e-6)
  # Adam's moments hold the gradients (mu = 0.1 g, nu = 0.001 g² after one step: compared as
  # |g| through sqrt(nu), which would double every relative error): equal up to float32
  # rounding of long sums that cancel, e.g. a bias gradient summed over 8·28·28 positions.
  # That rounding depends on the CPU: the test passed at 5e-5 on moments on an AVX2 EPYC; on
  # an AVX-512 one the first layer's bias gradient is off by 3.5e-5 of its largest element
  # (5.8e-5 in nu). A wrong backward pass is off by O(1).
  def as_gradients(opt_state):
    return jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.sqrt(x) if any(getattr(k, "key", None) == "nu" for k in path)
        else x, opt_state)
  # the checkpoint's state is plain dicts, keyed "mu" and "nu"
  assert [float(x) for x in jax.tree.leaves(as_gradients({"nu": {"w": 4.0}, "mu": 4.0}))] == [
      4.0, 2.0]
  _assert_close(as_gradients(custom_state["optimizer"]["opt_state"]),
                as_gradients(plain_state["optimizer"]["opt_state"]), rtol=1e-4)
  # AdamW's first update, -lr·g/(|g| + eps), turns rounding of a gradient element near eps
  # (1e-8) into up to a few per mille of lr: parameters to 1e-4.
  custom_params = jax.tree_util.tree_leaves_with_path(custom_state["model"])
  plain_params = jax.tree.leaves(plain_state["model"])
  assert len(custom_params) == len(plain_params) > 0
  for (path, custom), plain in zip(custom_params, plain_params):
    np.testing.assert_allclose(custom, plain, atol=1e-4, rtol=0,
                               err_msg=jax.tree_util.keystr(path))


def test_custom_gradients_default_to_the_cpu_backend_and_the_environment_is_checked(monkeypatch):
  assert gradients.custom_gradients_enabled() == (jax.default_backend() == "cpu")
  with gradients.custom_gradients(False):
    assert not gradients.custom_gradients_enabled()
  for value, expected in (("auto", None), ("0", False), ("on", True)):
    monkeypatch.setenv("DS_SYMMETRY_CUSTOM_GRADIENTS", value)
    assert gradients._from_environment() is expected  # pylint: disable=protected-access
  monkeypatch.setenv("DS_SYMMETRY_CUSTOM_GRADIENTS", "maybe")
  with pytest.raises(ValueError, match="DS_SYMMETRY_CUSTOM_GRADIENTS='maybe'"):
    gradients._from_environment()  # pylint: disable=protected-access
