"""The shared argument checks (``ds_symmetry._validation``) and their use by ops and analysis."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ds_symmetry import _validation as v
from ds_symmetry import analysis, ops


@pytest.mark.parametrize("value", [0, -3, 2.0, True, "3", None])
def test_positive_int_rejects_with_name_value_and_expectation(value):
  with pytest.raises(ValueError) as info:
    v.positive_int("kernel_size", value)
  assert str(info.value) == f"kernel_size must be a positive int; got {value!r}"


def test_positive_int_returns_a_python_int():
  out = v.positive_int("n", np.int64(7))
  assert out == 7 and type(out) is int


@pytest.mark.parametrize("value, allow_zero", [(0.0, False), (-1.0, True), (float("nan"), True),
                                               ("x", False)])
def test_positive_number_rejects(value, allow_zero):
  with pytest.raises(ValueError, match=r"^tau must be .*; got "):
    v.positive_number("tau", value, allow_zero=allow_zero)


def test_positive_number_accepts_zero_when_allowed_and_tracers_unchecked():
  assert v.positive_number("noise_scale", 0.0, allow_zero=True) == 0.0
  # Under jit the value is abstract: the check must not raise (nor concretise it).
  out = jax.jit(lambda t: v.positive_number("tau", t) * 2)(-1.0)
  assert float(out) == -2.0


def test_float_array_promotes_integers_and_rejects_complex():
  assert jnp.issubdtype(v.float_array("x", jnp.arange(3)).dtype, jnp.floating)
  with pytest.raises(ValueError, match="x must be a real floating array; got dtype complex64"):
    v.float_array("x", jnp.ones(2, jnp.complex64))


@pytest.mark.parametrize("shape, ndim, ok", [
    ((3, 3), None, True), ((2, 4, 4), None, True), ((0, 0), None, True), ((3,), None, False),
    ((3, 4), None, False), ((3, 3), 2, True), ((2, 3, 3), 2, False), ((0, 0), 2, False),
    ((2, 3, 3), 3, True), ((0, 3, 3), 3, False), ((3, 3), 3, False)])
def test_square_shape(shape, ndim, ok):
  if ok:
    v.square_shape("stack", shape, ndim=ndim)
  else:
    with pytest.raises(ValueError, match=r"stack must have shape \[.*; got " + str(shape)
                       .replace("(", r"\(").replace(")", r"\)")):
      v.square_shape("stack", shape, ndim=ndim)


def test_ops_and_analysis_give_the_same_messages():
  """One set of checks: the same bad kernel size or shape reads the same in both packages."""
  with pytest.raises(ValueError) as from_analysis:
    analysis.group_representations("C4", 0)
  with pytest.raises(ValueError) as from_helper:
    v.positive_int("kernel_size", 0)
  assert str(from_analysis.value) == str(from_helper.value)
  with pytest.raises(ValueError) as from_ops:
    ops.sinkhorn(jnp.ones((3, 4)))
  with pytest.raises(ValueError) as from_regulariser:
    ops.norm_loss(jnp.ones((3, 4)))
  assert (str(from_ops.value).replace("log_alpha", "X")
          == str(from_regulariser.value).replace("logits", "X"))
