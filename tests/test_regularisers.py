"""Tests for ds_symmetry.ops.regularisers against numpy re-derivations and known values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ds_symmetry.ops.regularisers import entropy, norm_loss


def _normal(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _np_norm_loss(logits):
  """Re-derivation: explicit broadcast of the [.., 1, n] and [.., n, 1] log-sum-exp terms."""
  logits = np.asarray(logits, np.float64)
  col = np.log(np.sum(np.exp(logits), axis=-2, keepdims=True))
  row = np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
  total = np.broadcast_to(col**2, logits.shape) + np.broadcast_to(row**2, logits.shape)
  return total.sum() / logits.size


@pytest.mark.parametrize("shape", [(5, 5), (3, 7, 7), (2, 2, 4, 4)])
def test_norm_loss_matches_numpy(shape):
  logits = 2.0 * _normal(0, shape)
  np.testing.assert_allclose(float(norm_loss(logits)), _np_norm_loss(logits), rtol=1e-5)
  assert norm_loss(logits).shape == ()


def test_norm_loss_is_not_the_papers_printed_formula():
  # Rows and columns are treated asymmetrically in the logits: transposing matters only through
  # which term is which, so the value is transpose-invariant, but not invariant to row shifts.
  logits = _normal(1, (4, 4))
  np.testing.assert_allclose(float(norm_loss(logits.T)), float(norm_loss(logits)), rtol=1e-6)
  shifted = logits + jnp.arange(4.0)[:, None]  # same Sinkhorn output, different gauge
  assert abs(float(norm_loss(shifted)) - float(norm_loss(logits))) > 1.0


def test_norm_loss_at_init_is_about_28_for_d25():
  values = [float(norm_loss(jnp.asarray(np.random.default_rng(s).uniform(size=(3, 25, 25)), jnp.float32)))
            for s in range(3)]
  for value in values:  # measured 28.1-28.3; analytic ~ 2 (log 25 + log(e - 1))^2 = 28.3
    assert 27.5 < value < 29.0, values


def test_norm_loss_zero_when_exp_logits_doubly_stochastic():
  n = 6
  np.testing.assert_allclose(float(norm_loss(jnp.full((2, n, n), -np.log(n)))), 0.0, atol=1e-10)
  perm_logits = jnp.where(jnp.eye(n)[::-1] > 0, 0.0, -jnp.inf)
  assert float(norm_loss(perm_logits)) == 0.0


def test_norm_loss_gradient_finite_and_correct():
  logits = _normal(2, (2, 3, 3))
  g = jax.grad(norm_loss)(logits)
  # d/dx of mean(c_j^2 + r_i^2) = (2/N) * n * (c_j softmax_col + r_i softmax_row) per entry.
  x = np.asarray(logits, np.float64)
  col = np.log(np.exp(x).sum(-2, keepdims=True))
  row = np.log(np.exp(x).sum(-1, keepdims=True))
  n, size = x.shape[-1], x.size
  expected = 2 * n / size * (col * np.exp(x - col) + row * np.exp(x - row))
  np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-5, atol=1e-7)


def test_entropy_of_permutations_is_zero_and_uniform_is_n_log_n():
  rng = np.random.default_rng(0)
  perms = jnp.asarray(np.stack([np.eye(7)[rng.permutation(7)] for _ in range(4)]), jnp.float32)
  assert float(entropy(perms)) == 0.0
  for n in (3, 25):
    uniform = jnp.full((5, n, n), 1.0 / n)
    np.testing.assert_allclose(float(entropy(uniform)), 5 * n * np.log(n), rtol=1e-5)
    np.testing.assert_allclose(float(entropy(uniform[0])), n * np.log(n), rtol=1e-5)


def test_entropy_matches_numpy_and_is_a_sum():
  S = jax.nn.softmax(_normal(3, (3, 6, 6)), axis=-1)
  S = S.at[0, 0, 0].set(0.0)
  x = np.asarray(S, np.float64)
  expected = -np.sum(x * np.log(np.maximum(x, 1e-16)))
  np.testing.assert_allclose(float(entropy(S)), expected, rtol=1e-5)
  np.testing.assert_allclose(float(entropy(S)), sum(float(entropy(s)) for s in S), rtol=1e-5)
  g = jax.grad(entropy)(S)
  assert bool(jnp.all(jnp.isfinite(g)))
  np.testing.assert_allclose(float(g[0, 0, 0]), -np.log(1e-16), rtol=1e-5)  # clamp branch


@pytest.mark.parametrize("fn,name", [(norm_loss, "logits"), (entropy, "S")])
def test_bad_shapes_raise(fn, name):
  with pytest.raises(ValueError, match=name):
    fn(jnp.ones(4))
  with pytest.raises(ValueError, match=r"\(2, 3\)"):
    fn(jnp.ones((2, 3)))
