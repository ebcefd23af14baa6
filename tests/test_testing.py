"""Tests for ds_symmetry.testing: exact G-CNNs pass, soft random representations fail."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ds_symmetry import ops, testing

GROUPS = ("C2", "C4", "flip", "D4")


def _network(name, k, key, c_in=1, c_hidden=3, c_out=2, lift_reps=None, group_reps=None):
  """Lifting conv -> relu -> group conv; exact representations unless given."""
  order = ops.group_order(name)
  lift_reps = ops.spatial_permutations(name, k) if lift_reps is None else lift_reps
  group_reps = ops.shift_twist_permutations(name, k) if group_reps is None else group_reps
  k1, k2 = jax.random.split(key)
  w1 = jax.random.normal(k1, (c_hidden, c_in, k * k))
  w2 = jax.random.normal(k2, (c_out, c_hidden, order * k * k)) / np.sqrt(c_hidden * order)

  @jax.jit
  def f(x):
    y = jax.nn.relu(ops.lift_conv(x, lift_reps, w1, padding="VALID"))
    return ops.group_conv(y, group_reps, w2, padding="VALID")

  return f


def _images(seed=0, size=28, channels=1, batch=2):
  return jax.random.normal(jax.random.PRNGKey(seed), (batch, size, size, channels))


@pytest.mark.parametrize("k", [3, 5])
def test_c4_network_is_equivariant_to_quarter_turns(k):
  f = _network("C4", k, jax.random.PRNGKey(1))
  x = _images()
  assert f(x).shape == (2, 28 - 2 * (k - 1), 28 - 2 * (k - 1), 2, 4)
  for g in range(1, 4):
    # Rotating the input rotates the output and shifts the group axis cyclically.
    transform_out = testing.group_feature_transform("C4", g)
    y = f(x)
    np.testing.assert_allclose(transform_out(y), jnp.roll(jnp.rot90(y, g, axes=(1, 2)), g, -1))
    testing.assert_equivariant(f, x, lambda v, g=g: testing.rotate90(v, g), transform_out)
    assert testing.equivariance_error(f, x, testing.image_transform("C4", g),
                                      transform_out) < 1e-5


@pytest.mark.parametrize("name", GROUPS)
@pytest.mark.parametrize("k", [3, 5])
def test_exact_networks_are_equivariant_for_every_element(name, k):
  f = _network(name, k, jax.random.PRNGKey(2))
  x = _images(seed=3)
  for g in range(ops.group_order(name)):
    testing.assert_equivariant(f, x, testing.image_transform(name, g),
                               testing.group_feature_transform(name, g))


def test_flip_transform_matches_flip_horizontal():
  x = _images(seed=4)
  np.testing.assert_array_equal(testing.image_transform("flip", 1)(x),
                                testing.flip_horizontal(x))
  np.testing.assert_array_equal(testing.image_transform("D4", 4)(x), testing.flip_horizontal(x))
  np.testing.assert_array_equal(testing.image_transform("D4", 6)(x),
                                testing.rotate90(testing.flip_horizontal(x), 2))
  np.testing.assert_array_equal(testing.image_transform("C2", 1)(x), testing.rotate90(x, 2))


@pytest.mark.parametrize("name", GROUPS)
def test_feature_transform_is_a_group_action(name):
  """T(a)∘T(b) == T(a·b) on [B, H, W, C, G] maps (checks the g⁻¹h convention)."""
  table = ops.cayley_table(name)
  y = jax.random.normal(jax.random.PRNGKey(5), (1, 6, 6, 2, ops.group_order(name)))
  for a in range(ops.group_order(name)):
    for b in range(ops.group_order(name)):
      lhs = testing.group_feature_transform(name, a)(testing.group_feature_transform(name, b)(y))
      rhs = testing.group_feature_transform(name, int(table[a, b]))(y)
      np.testing.assert_array_equal(lhs, rhs)


@pytest.mark.parametrize("name", ["C4", "D4"])
def test_pooled_network_is_invariant(name):
  f = _network(name, 5, jax.random.PRNGKey(6))

  def pooled(x):
    return jnp.mean(ops.group_pool(f(x), "max"), axis=(1, 2))            # [B, C]

  x = _images(seed=7)
  for g in range(ops.group_order(name)):
    testing.assert_invariant(pooled, x, testing.image_transform(name, g))
    assert testing.invariance_error(pooled, x, testing.image_transform(name, g)) < 1e-5


def _random_doubly_stochastic(rng, n, d, mixes=3):
  stack = np.zeros((n, d, d), np.float32)
  for i in range(n):
    for _ in range(mixes):
      stack[i, np.arange(d), rng.permutation(d)] += 1.0 / mixes
  return jnp.asarray(stack)


def test_random_representations_are_not_equivariant():
  rng = np.random.default_rng(0)
  k = 3
  f = _network("C4", k, jax.random.PRNGKey(8),
               lift_reps=_random_doubly_stochastic(rng, 4, k * k),
               group_reps=_random_doubly_stochastic(rng, 4, 4 * k * k))
  x = _images(seed=9)
  with pytest.raises(AssertionError, match="not equivariant"):
    testing.assert_equivariant(f, x, testing.image_transform("C4", 1),
                               testing.group_feature_transform("C4", 1))
  assert testing.equivariance_error(f, x, testing.image_transform("C4", 1),
                                    testing.group_feature_transform("C4", 1)) > 1e-2


def test_wrong_output_transform_is_caught():
  """The spatial rotation alone (no group shift) is not the right output action."""
  f = _network("C4", 3, jax.random.PRNGKey(10))
  with pytest.raises(AssertionError, match="tolerance"):
    testing.assert_equivariant(f, _images(), testing.image_transform("C4", 1),
                               lambda y: testing.rotate90(y, 1))


def test_relative_and_absolute_errors():
  x = jnp.arange(8.0).reshape(1, 2, 2, 2)
  f = lambda v: 10.0 * v
  shifted = lambda y: y + 1.0
  assert testing.equivariance_error(f, x, lambda v: v, shifted, relative=False) == 1.0
  assert testing.equivariance_error(f, x, lambda v: v, shifted) == pytest.approx(1.0 / 70.0)
  assert testing.invariance_error(f, x, testing.rotate90) > 0


def test_pytree_outputs():
  x = _images(seed=11)
  f = lambda v: {"mean": jnp.mean(v, axis=(1, 2)), "map": v}
  out = lambda y: {"mean": y["mean"], "map": testing.rotate90(y["map"])}
  testing.assert_equivariant(f, x, testing.rotate90, out)


def test_bad_arguments():
  with pytest.raises(ValueError, match="name"):
    testing.image_transform("SO2", 1)
  with pytest.raises(ValueError, match="g must be"):
    testing.group_feature_transform("C4", 4)
  with pytest.raises(ValueError, match="G=4"):
    testing.group_feature_transform("C4", 1)(jnp.zeros((1, 4, 4, 2, 8)))
  with pytest.raises(ValueError, match="shape"):
    testing.equivariance_error(lambda v: v, jnp.zeros((1, 4, 4, 1)), lambda v: v,
                               lambda y: y[:, :2])
