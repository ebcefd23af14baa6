"""analysis.invariance: the data's invariances read off a classifier's held-out loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ds_symmetry import ops
from ds_symmetry.analysis import invariance_ratios, invariant_subgroup, subgroup_ratios


def _symmetrised_classifier(group, seed=0, size=7):
  """A random linear classifier averaged over ``group``: exactly invariant to it."""
  weights = jax.random.normal(jax.random.key(seed), (size * size, 10))
  elements = ops.d4_elements(group)

  def apply(x):
    flat = jnp.stack([ops.apply_element("D4", g, x, axes=(1, 2)).reshape(x.shape[0], -1)
                      for g in elements])
    return jnp.mean(flat @ weights, axis=0)
  return apply


@pytest.mark.parametrize("group", ops.D4_SUBGROUPS)
def test_a_classifier_invariant_to_a_subgroup_is_named_by_its_ratios(group):
  apply = _symmetrised_classifier(group)
  images = np.asarray(jax.random.normal(jax.random.key(1), (400, 7, 7, 1)))
  labels = np.asarray(jnp.argmax(apply(jnp.asarray(images)), -1))  # its own predictions
  ratios = invariance_ratios(apply, images, labels, batch_size=128)
  own = list(ops.d4_elements(group))
  np.testing.assert_allclose(ratios[own], 1.0, rtol=1e-5)
  others = [g for g in range(8) if g not in own]
  assert np.all(ratios[others] > 1.5)
  assert invariant_subgroup(ratios) == group
  assert subgroup_ratios(ratios)[group] == pytest.approx(1.0, rel=1e-5)


def test_the_largest_subgroup_inside_the_accepted_elements_wins():
  ratios = np.array([1.0, 1.5, 1.0, 1.5, 1.01, 1.5, 1.0, 1.5])  # e, r², m_lr, m_ud accepted
  assert invariant_subgroup(ratios) == "D2"
  assert invariant_subgroup(ratios, tolerance=0.005) == "C2"  # m_lr at 1.01 now rejected
  ratios[4], ratios[6] = 1.02, 1.2  # {e, r², m_lr} accepted: not closed; two subgroups of
  assert invariant_subgroup(ratios) == "C2"  # order 2 inside it: the smaller worst ratio wins


@pytest.mark.parametrize("kwargs, message", [
    ({"ratios": np.ones(7)}, "expected 8 finite ratios"),
    ({"ratios": np.r_[np.ones(7), np.nan]}, "expected 8 finite ratios"),
    ({"ratios": np.ones(8), "tolerance": 0.0}, "tolerance: 0.0"),
])
def test_invariant_subgroup_refuses_bad_input_in_one_line(kwargs, message):
  with pytest.raises(ValueError, match=message):
    invariant_subgroup(**kwargs)


def test_invariance_ratios_refuses_bad_input_in_one_line():
  apply = _symmetrised_classifier("trivial")
  with pytest.raises(ValueError, match="expected square images"):
    invariance_ratios(apply, np.zeros((2, 7, 6, 1)), np.zeros(2, int))
  with pytest.raises(ValueError, match=r"labels: shape \(3,\)"):
    invariance_ratios(apply, np.zeros((2, 7, 7, 1)), np.zeros(3, int))
  with pytest.raises(ValueError, match="batch_size: 0"):
    invariance_ratios(apply, np.zeros((2, 7, 7, 1)), np.zeros(2, int), batch_size=0)
