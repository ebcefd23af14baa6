"""Kernel stacks: layout against a numpy re-derivation; exact lifting + group-conv equivariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ds_symmetry import ops
from ds_symmetry.testing import group_feature_transform, image_transform


def _rng(seed=0):
  return np.random.default_rng(seed)


def test_lift_kernels_layout_matches_numpy():
  g, k, c_out, c_in = 3, 3, 4, 2
  reps = _rng(0).random((g, k * k, k * k)).astype(np.float32)
  weight = _rng(1).normal(size=(c_out, c_in, k * k)).astype(np.float32)
  kernel = np.asarray(ops.lift_kernels(jnp.asarray(reps), jnp.asarray(weight)))
  assert kernel.shape == (k, k, c_in, c_out * g)
  for o in range(c_out):
    for e in range(g):
      for i in range(c_in):
        expected = (reps[e] @ weight[o, i]).reshape(k, k)
        np.testing.assert_allclose(kernel[:, :, i, o * g + e], expected, rtol=1e-5, atol=1e-6)


def test_group_kernels_layout_matches_numpy():
  g, k, c_out, c_in = 2, 3, 3, 2
  d = g * k * k
  reps = _rng(2).random((g, d, d)).astype(np.float32)
  weight = _rng(3).normal(size=(c_out, c_in, d)).astype(np.float32)
  kernel = np.asarray(ops.group_kernels(jnp.asarray(reps), jnp.asarray(weight)))
  assert kernel.shape == (k, k, c_in * g, c_out * g)
  for o in range(c_out):
    for e in range(g):
      for i in range(c_in):
        transformed = (reps[e] @ weight[o, i]).reshape(g, k, k)  # (g_in, y, x)
        for h in range(g):
          np.testing.assert_allclose(kernel[:, :, i * g + h, o * g + e], transformed[h],
                                     rtol=1e-5, atol=1e-6)


def test_lift_conv_with_identity_reps_is_plain_conv():
  k, c_in, c_out = 3, 2, 4
  x = jnp.asarray(_rng(4).normal(size=(2, 9, 9, c_in)), jnp.float32)
  weight = jnp.asarray(_rng(5).normal(size=(c_out, c_in, k * k)), jnp.float32)
  y = ops.lift_conv(x, jnp.eye(k * k)[None], weight)
  hwio = jnp.transpose(weight.reshape(c_out, c_in, k, k), (2, 3, 1, 0))
  np.testing.assert_allclose(y[..., 0], ops.conv2d(x, hwio), rtol=1e-5, atol=1e-5)


def _two_layer(name, k, padding="VALID"):
  order = ops.group_order(name)
  w1 = jax.random.normal(jax.random.PRNGKey(1), (4, 3, k * k))
  w2 = jax.random.normal(jax.random.PRNGKey(2), (5, 4, order * k * k)) / 10
  lift_reps = ops.spatial_permutations(name, k)
  group_reps = ops.shift_twist_permutations(name, k)

  def network(x):
    h = jax.nn.relu(ops.lift_conv(x, lift_reps, w1, padding=padding))
    return ops.group_conv(h, group_reps, w2, padding=padding)
  return network


@pytest.mark.parametrize("name", ["C4", "D4", "C2", "flip"])
@pytest.mark.parametrize("k", [3, 5])
def test_lift_then_group_conv_is_exactly_equivariant(name, k):
  network = _two_layer(name, k)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 28, 28, 3))
  y = network(x)
  scale = float(jnp.max(jnp.abs(y)))
  for g in range(ops.group_order(name)):
    transformed = network(image_transform(name, g)(x))
    expected = group_feature_transform(name, g)(y)
    assert float(jnp.max(jnp.abs(transformed - expected))) <= 1e-5 * scale


def test_c4_rotation_rotates_space_and_shifts_group_axis_explicitly():
  """The same statement as above, written with jnp.rot90 and jnp.roll only."""
  network = _two_layer("C4", 5)
  x = jax.random.normal(jax.random.PRNGKey(3), (1, 20, 20, 3))
  y = network(x)
  y_rot = network(jnp.rot90(x, 1, axes=(1, 2)))
  expected = jnp.roll(jnp.rot90(y, 1, axes=(1, 2)), 1, axis=-1)
  np.testing.assert_allclose(y_rot, expected, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(y))))


def test_same_padding_even_kernel_breaks_equivariance_as_documented():
  network = _two_layer("C4", 4, padding="SAME")
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 16, 16, 3))
  y = network(x)
  error = jnp.max(jnp.abs(network(jnp.rot90(x, 1, axes=(1, 2)))
                          - jnp.roll(jnp.rot90(y, 1, axes=(1, 2)), 1, axis=-1)))
  assert float(error) > 1e-2 * float(jnp.max(jnp.abs(y)))


def test_group_pool_modes():
  x = jnp.arange(24.0).reshape(1, 1, 2, 3, 4)
  np.testing.assert_array_equal(ops.group_pool(x, "mean"), x.mean(-1))
  np.testing.assert_array_equal(ops.group_pool(x, "max"), x.max(-1))
  with pytest.raises(ValueError, match="mode"):
    ops.group_pool(x, "sum")


@pytest.mark.parametrize("bad_call, argument", [
    (lambda: ops.lift_kernels(jnp.ones((4, 9, 9)), jnp.ones((2, 3, 25))), "weight"),
    (lambda: ops.lift_kernels(jnp.ones((4, 8, 9)), jnp.ones((2, 3, 9))), "reps"),
    (lambda: ops.lift_kernels(jnp.ones((4, 8, 8)), jnp.ones((2, 3, 8))), "square"),
    (lambda: ops.group_kernels(jnp.ones((4, 36, 36)), jnp.ones((2, 3, 9))), "weight"),
    (lambda: ops.group_kernels(jnp.ones((4, 30, 30)), jnp.ones((2, 3, 30))), "multiple"),
    (lambda: ops.lift_conv(jnp.ones((1, 8, 8, 2)), jnp.ones((4, 9, 9)), jnp.ones((2, 3, 9))),
     "channels"),
    (lambda: ops.group_conv(jnp.ones((1, 8, 8, 3, 2)), jnp.ones((4, 36, 36)),
                            jnp.ones((2, 3, 36))), "G=4"),
    (lambda: ops.conv2d(jnp.ones((1, 8, 8, 1)), jnp.ones((3, 3, 1, 1)), "FULL"), "padding"),
])
def test_bad_input_is_a_clear_error(bad_call, argument):
  with pytest.raises(ValueError, match=argument):
    bad_call()
