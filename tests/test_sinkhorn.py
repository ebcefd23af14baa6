"""Tests for ds_symmetry.ops.sinkhorn: numpy and OTT-JAX oracles, gradients, limits, tol, noise."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.test_util import check_grads

from ds_symmetry.ops.sinkhorn import marginal_error, sinkhorn

# One compilation per configuration keeps the file fast (eager mode would re-dispatch op by op).
sk = jax.jit(sinkhorn, static_argnames=("num_iters", "tol", "memory_efficient"))


# ---------------------------------------------------------------- independent numpy oracle


def _np_logsumexp(x, axis):
  m = np.max(x, axis=axis, keepdims=True)
  m = np.where(np.isfinite(m), m, 0.0)
  return m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def _np_error(S):
  return max(np.max(np.abs(S.sum(-1) - 1)), np.max(np.abs(S.sum(-2) - 1)))


def np_sinkhorn(log_alpha, num_iters, tau=1.0, tol=None):
  """Reference: the paper's loop, one matrix at a time, float64, with a real early exit."""
  log_alpha = np.asarray(log_alpha, np.float64)
  flat = log_alpha.reshape((-1,) + log_alpha.shape[-2:]) / tau
  out = []
  for la in flat:
    for _ in range(num_iters):
      if tol is not None and _np_error(np.exp(la)) <= tol:
        break
      la = la - _np_logsumexp(la, axis=1)
      la = la - _np_logsumexp(la, axis=0)
    out.append(np.exp(la))
  return np.stack(out).reshape(log_alpha.shape)


# Test data from numpy: jax.random would cost a compilation per shape.
def _uniform(seed, shape, low=0.0, high=1.0, dtype=np.float32):
  return jnp.asarray(np.random.default_rng(seed).uniform(low, high, shape).astype(dtype))


def _normal(seed, shape, dtype=np.float32):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


# ---------------------------------------------------------------- OTT-JAX oracle (docs/sinkhorn_oracle.md)


@functools.partial(jax.jit, static_argnames=("fixed_iters", "threshold"))
def ott_doubly_stochastic(log_alpha, *, fixed_iters=None, threshold=1e-12):
  from ott.geometry import geometry
  from ott.problems.linear import linear_problem
  from ott.solvers.linear import implicit_differentiation as imp
  from ott.solvers.linear import sinkhorn as ott_sinkhorn
  n = log_alpha.shape[-1]
  geom = geometry.Geometry(cost_matrix=-log_alpha, epsilon=1.0)  # epsilon MUST be explicit
  prob = linear_problem.LinearProblem(geom)  # uniform marginals
  kw = dict(lse_mode=True, threshold=threshold, implicit_diff=imp.ImplicitDiff())
  if fixed_iters is not None:
    kw.update(min_iterations=fixed_iters, max_iterations=fixed_iters, inner_iterations=1,
              implicit_diff=None)
  else:
    kw.update(max_iterations=5000)
  out = ott_sinkhorn.Sinkhorn(**kw)(prob)
  return n * out.matrix, out


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("shape,num_iters", [((4, 4), 7), ((2, 5, 5), 1), ((2, 3, 6, 6), 7),
                                             ((1, 1), 3)])
def test_matches_numpy_reference_float64(enable_x64, shape, num_iters):
  x = 4.0 * _normal(0, shape, np.float64)
  for memory_efficient in (False, True):
    S = sk(x, num_iters, memory_efficient=memory_efficient)
    assert S.shape == shape and S.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(S), np_sinkhorn(np.asarray(x), num_iters),
                               rtol=1e-12, atol=1e-14)


def test_float32_stays_float32_and_matches_reference():
  x = 3.0 * _normal(1, (3, 7, 7))
  S = sk(x, 20)
  assert S.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(S), np_sinkhorn(np.asarray(x), 20), rtol=2e-5, atol=1e-6)
  # Ends on the column step: columns exact, rows only approximate.
  np.testing.assert_allclose(np.asarray(S.sum(-2)), 1.0, atol=1e-5)


def test_integer_input_is_cast_to_float():
  S = sinkhorn(jnp.arange(9).reshape(3, 3) % 2, 5)  # eager call
  assert jnp.issubdtype(S.dtype, jnp.floating)


def test_marginal_error_values_and_shape():
  S = np.zeros((2, 3, 3, 3))
  S[...] = np.eye(3)
  S[1, 2, 0, 0] = 1.5  # row 0 sums to 1.5, column 0 sums to 1.5
  S[0, 1, 1, 2] = 0.25  # row 1 sums to 1.25, column 2 sums to 1.25
  err = marginal_error(jnp.asarray(S))
  assert err.shape == (2, 3)
  np.testing.assert_allclose(np.asarray(err), [[0, 0.25, 0], [0, 0, 0.5]], atol=1e-7)
  assert marginal_error(jnp.eye(4)).shape == ()
  with pytest.raises(ValueError, match="S must have shape"):
    marginal_error(jnp.ones((3, 4)))


def test_converged_matches_ott(enable_x64):
  L = _uniform(2, (9, 9), 0.0, 3.0, np.float64)
  P_ott, out = ott_doubly_stochastic(L)
  assert bool(out.converged)
  S = sk(L, 500)
  assert float(marginal_error(S)) < 1e-12
  np.testing.assert_allclose(np.asarray(S), np.asarray(P_ott), atol=1e-10)


@pytest.mark.parametrize("num_iters", [1, 5, 20])
def test_truncated_matches_ott_transposed(enable_x64, num_iters):
  # Hard case: peaky logits, far from converged after 20 rounds (docs/sinkhorn_oracle.md).
  L = 15.0 * _normal(3, (16, 16), np.float64)
  P_ott_t, _ = ott_doubly_stochastic(L.T, fixed_iters=num_iters)
  S = sk(L, num_iters)
  np.testing.assert_allclose(np.asarray(S), np.asarray(P_ott_t.T), atol=1e-11)
  if num_iters == 20:  # and the truncation really matters here
    assert float(marginal_error(S)) > 1e-2
    P_ott_plain, _ = ott_doubly_stochastic(L, fixed_iters=num_iters)
    assert float(jnp.max(jnp.abs(S - P_ott_plain))) > 1e-2


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_gradients_match_finite_differences(enable_x64, memory_efficient):
  x = 2.0 * _normal(4, (2, 4, 4), np.float64)
  W = _normal(5, (2, 4, 4), np.float64)

  def loss(x):
    S = sk(x, 6, tau=0.7, memory_efficient=memory_efficient)
    return jnp.sum(S * W) + jnp.sum(S**2)

  check_grads(jax.jit(loss), (x,), order=1, modes=("rev",), eps=1e-6, atol=1e-7, rtol=1e-7)
  check_grads(jax.jit(lambda x: sk(x, 3, memory_efficient=memory_efficient)), (x,), order=1,
              modes=("rev", "fwd"), eps=1e-6, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("tol", [None, 1e-3])
def test_memory_efficient_equals_default(tol):
  x = 2.0 * _normal(6, (3, 12, 12))
  W = _normal(7, (3, 12, 12))

  def loss(x, me):
    return jnp.sum(sk(x, 20, tol=tol, memory_efficient=me) * W)

  S_default = sk(x, 20, tol=tol)
  S_memory = sk(x, 20, tol=tol, memory_efficient=True)
  np.testing.assert_allclose(np.asarray(S_memory), np.asarray(S_default), rtol=1e-5, atol=1e-6)
  grad = jax.jit(jax.grad(loss), static_argnums=1)
  g_default = grad(x, False)
  g_memory = grad(x, True)
  scale = float(jnp.max(jnp.abs(g_default)))
  np.testing.assert_allclose(np.asarray(g_memory), np.asarray(g_default), atol=1e-5 * scale)


def test_memory_efficient_backward_memory_does_not_scale_with_iterations():
  x = _uniform(8, (3, 48, 48))

  def temp_bytes(num_iters, me):
    grad = jax.jit(jax.grad(lambda x: jnp.sum(sk(x, num_iters, memory_efficient=me)**2)))
    analysis = grad.lower(x).compile().memory_analysis()
    if analysis is None:
      pytest.skip("backend has no memory analysis")
    return analysis.temp_size_in_bytes

  matrix_bytes = 3 * 48 * 48 * 4
  growth_memory = temp_bytes(100, True) - temp_bytes(10, True)
  growth_default = temp_bytes(100, False) - temp_bytes(10, False)
  assert growth_default > 90 * matrix_bytes  # default: ~2 matrices per round
  assert growth_memory <= 90 * 2 * 3 * 48 * 4 + matrix_bytes  # memory option: 2 vectors per round


# ---------------------------------------------------------------- limits and robustness


def test_scaled_permutations_tend_to_the_permutation():
  rng = np.random.default_rng(0)
  for _ in range(3):
    P = np.stack([np.eye(6)[rng.permutation(6)] for _ in range(2)]).astype(np.float32)
    errors = [float(jnp.max(jnp.abs(sk(c * jnp.asarray(P), 50) - P)))
              for c in (1.0, 5.0, 20.0, 50.0)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-6
    assert errors[0] > 0.1


@pytest.mark.parametrize("memory_efficient,tol", [(False, None), (True, None), (False, 1e-5),
                                                  (True, 1e-5)])
def test_extreme_logits_are_finite(memory_efficient, tol):
  x = np.array(_normal(9, (2, 5, 5)))
  x[0, 0, 0], x[0, 1, 1], x[0, 2, 3] = 1e4, -1e4, 1e4
  x[1, 0, 1:] = -np.inf  # row 0 keeps only its (0, 0) entry
  x[1, 3, 2] = x[1, 4, 4] = -np.inf
  x = jnp.asarray(x, jnp.float32)
  W = _normal(10, x.shape)

  def loss(x):
    S = sk(x, 20, tol=tol, memory_efficient=memory_efficient)
    return jnp.sum(S * W), S

  (_, S), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(x)
  assert bool(jnp.all(jnp.isfinite(S)))
  np.testing.assert_allclose(np.asarray(S.sum(-2)), 1.0, atol=1e-4)
  assert float(jnp.max(S[1, 0, 1:])) == 0.0  # -inf logits are exact zeros
  assert float(S[1, 3, 2]) == 0.0 and float(S[1, 0, 0]) > 0.5
  assert bool(jnp.all(jnp.isfinite(g)))


# ---------------------------------------------------------------- transformations


def test_jit_vmap_and_no_recompilation():
  chex.clear_trace_counter()

  @chex.assert_max_traces(n=1)
  def f(x):
    return sinkhorn(x, 10)

  jitted = jax.jit(f)
  x = _uniform(11, (4, 6, 6))
  first = jitted(x)
  second = jitted(x + 1.0)  # new values, same shape: no second trace
  np.testing.assert_allclose(np.asarray(first), np.asarray(sk(x, 10)), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(second), np.asarray(first), rtol=1e-5, atol=1e-6)

  batched = jax.vmap(lambda m: sk(m, 10))(x)
  np.testing.assert_allclose(np.asarray(batched), np.asarray(first), rtol=1e-6, atol=1e-7)

  @chex.assert_max_traces(n=1)
  def loss(x, t):
    return jnp.sum(sinkhorn(x, 10, tau=t, tol=1e-4)**2)

  grad_jit = jax.jit(jax.grad(loss))
  grad_jit(x, 0.5)
  grad_jit(x * 2, 0.7)  # traced tau: no new compilation

  traces = []

  def g(x, num_iters, memory_efficient):
    traces.append(num_iters)
    return sinkhorn(x, num_iters, memory_efficient=memory_efficient)

  static = jax.jit(g, static_argnames=("num_iters", "memory_efficient"))
  static(x, num_iters=5, memory_efficient=True)
  static(x + 1.0, num_iters=5, memory_efficient=True)
  assert traces == [5]
  static(x, num_iters=6, memory_efficient=True)  # a new static value does retrace
  assert traces == [5, 6]


# ---------------------------------------------------------------- tol, tau, noise


def test_tol_matches_reference_early_exit_per_matrix(enable_x64):
  easy = _uniform(12, (9, 9), dtype=np.float64)
  hard = 6.0 * _normal(13, (9, 9), np.float64)
  stack = jnp.stack([easy, hard])
  for tol in (1e-3, 1e-6):
    for memory_efficient in (False, True):
      S = sk(stack, 40, tol=tol, memory_efficient=memory_efficient)
      np.testing.assert_allclose(np.asarray(S), np_sinkhorn(np.asarray(stack), 40, tol=tol),
                                 rtol=1e-12, atol=1e-14)


def test_tol_freezes_converged_matrices():
  easy = _uniform(14, (9, 9))
  hard = 10.0 * _normal(15, (9, 9))
  stack = jnp.stack([easy, hard])
  tol = 1e-4
  S_40 = sk(stack, 40, tol=tol)
  S_200 = sk(stack, 200, tol=tol)
  err = marginal_error(S_200)
  assert bool(jnp.all(err <= tol)), err
  # The easy matrix froze within a few rounds, so its result is bit-identical later on.
  assert bool(jnp.array_equal(S_40[0], S_200[0]))
  assert bool(jnp.array_equal(sk(easy, 40, tol=tol), S_40[0]))
  # The hard one is decided on its own and keeps improving past 40 rounds.
  assert float(marginal_error(S_40[1])) > tol
  assert not bool(jnp.array_equal(S_40[1], S_200[1]))
  np.testing.assert_array_equal(np.asarray(sk(hard, 200, tol=tol)), np.asarray(S_200[1]))
  # Tiny tol / many rounds: same result as without tol.
  np.testing.assert_allclose(np.asarray(sk(stack, 300, tol=1e-6)),
                             np.asarray(sk(stack, 300)), atol=5e-6)
  # At init-like logits the reference exits after a few rounds; frozen stays frozen.
  assert bool(jnp.array_equal(sk(easy, 5, tol=1e-3), sk(easy, 20, tol=1e-3)))


def test_tau_scales_logits_and_sharpens():
  x = _normal(16, (2, 6, 6))
  np.testing.assert_allclose(np.asarray(sk(x, 30, tau=0.25)),
                             np.asarray(sk(x / 0.25, 30)), rtol=1e-6, atol=1e-7)
  sharp = sk(x, 200, tau=0.05)
  soft = sk(x, 200, tau=50.0)
  assert float(jnp.min(jnp.max(sharp, axis=-1))) > float(jnp.max(jnp.max(soft, axis=-1)))
  np.testing.assert_allclose(np.asarray(soft), 1 / 6, atol=0.02)


def test_gumbel_noise():
  x = _uniform(17, (3, 5, 5))
  key = jax.random.key(18)
  plain = sk(x, 20)
  noisy = sk(x, 20, noise_key=key)
  assert float(jnp.max(jnp.abs(noisy - plain))) > 1e-2
  np.testing.assert_array_equal(np.asarray(noisy), np.asarray(sk(x, 20, noise_key=key)))
  other = sk(x, 20, noise_key=jax.random.key(19))
  assert float(jnp.max(jnp.abs(other - noisy))) > 1e-2
  manual = sk((x + 0.5 * jax.random.gumbel(key, x.shape)) / 0.3, 20)
  np.testing.assert_allclose(
      np.asarray(sk(x, 20, tau=0.3, noise_key=key, noise_scale=0.5)), np.asarray(manual),
      rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(sk(x, 20, noise_key=key, noise_scale=0.0)),
                             np.asarray(plain), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(noisy.sum(-2)), 1.0, atol=1e-5)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("kwargs,argument", [
    (dict(log_alpha=jnp.ones(3)), "log_alpha"),
    (dict(log_alpha=jnp.ones((3, 4, 5))), "log_alpha"),
    (dict(num_iters=0), "num_iters"),
    (dict(num_iters=-2), "num_iters"),
    (dict(num_iters=2.5), "num_iters"),
    (dict(num_iters=True), "num_iters"),
    (dict(tau=0.0), "tau"),
    (dict(tau=-1.0), "tau"),
    (dict(tau=float("nan")), "tau"),
    (dict(tol=0.0), "tol"),
    (dict(tol=-1e-3), "tol"),
    (dict(noise_key=jax.random.key(0), noise_scale=-1.0), "noise_scale"),
])
def test_bad_arguments_raise(kwargs, argument):
  kwargs = dict(kwargs)
  log_alpha = kwargs.pop("log_alpha", jnp.ones((2, 3, 3)))
  with pytest.raises(ValueError, match=argument) as info:
    sinkhorn(log_alpha, **kwargs)
  if argument == "log_alpha":
    assert str(tuple(log_alpha.shape)) in str(info.value)


# ---------------------------------------------------------------- properties (hypothesis)
# Random shapes, iteration counts and logits, including peaky ones far from convergence.

_PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


@st.composite
def _logits_and_iterations(draw, max_abs=30.0):
  n = draw(st.integers(1, 5))
  batch = draw(st.integers(1, 2))
  num_iters = draw(st.sampled_from([1, 2, 5, 20]))
  values = draw(hnp.arrays(np.float32, (batch, n, n),
                           elements=st.floats(-max_abs, max_abs, width=32)))
  return values, num_iters


@_PROPERTY_SETTINGS
@given(_logits_and_iterations(), st.booleans())
def test_property_every_round_ends_column_stochastic(case, memory_efficient):
  """Rows, then columns: after any number of rounds the columns sum to 1 exactly (up to
  rounding) and every entry is a probability, however far the rows are from 1."""
  logits, num_iters = case
  S = np.asarray(sk(jnp.asarray(logits), num_iters, memory_efficient=memory_efficient))
  assert np.all(np.isfinite(S)) and np.all(S >= 0) and np.all(S <= 1 + 1e-6)
  np.testing.assert_allclose(S.sum(axis=-2), 1.0, atol=2e-6)


@_PROPERTY_SETTINGS
@given(_logits_and_iterations(), hnp.arrays(np.float32, (5,), elements=st.floats(-50, 50,
                                                                              width=32)))
def test_property_row_constants_change_nothing(case, shifts):
  """The first row step removes any constant added to a row of the logits."""
  logits, num_iters = case
  n = logits.shape[-1]
  shifted = logits + shifts[:n, None]
  np.testing.assert_allclose(np.asarray(sk(jnp.asarray(shifted), num_iters)),
                             np.asarray(sk(jnp.asarray(logits), num_iters)), atol=2e-5)


@_PROPERTY_SETTINGS
@given(_logits_and_iterations())
def test_property_memory_efficient_path_equals_default(case):
  logits, num_iters = case
  np.testing.assert_allclose(
      np.asarray(sk(jnp.asarray(logits), num_iters, memory_efficient=True)),
      np.asarray(sk(jnp.asarray(logits), num_iters)), atol=2e-5)


@_PROPERTY_SETTINGS
@given(_logits_and_iterations(max_abs=2.0))
def test_property_moderate_logits_converge_to_doubly_stochastic(case):
  """Logits within ±2 (entries of exp within a factor e⁴) converge well within 200 rounds."""
  logits, _ = case
  S = sk(jnp.asarray(logits), 200)
  assert float(jnp.max(marginal_error(S))) < 1e-4
