"""nn.SubgroupSelector: exact invariance of every readout, the selection gradient, commitment,
and the teacher–student toy that must recover each of the ten subgroups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ds_symmetry import ops
from ds_symmetry.nn import SubgroupSelector, parameter_groups
from ds_symmetry.nn.subgroup_selection import membership_matrix, transformed_copies
from experiments.discover_symmetry import identify_subgroup


def _mlp(size=7, seed=0):
  rngs = nnx.Rngs(seed)
  return nnx.Sequential(lambda x: x.reshape(x.shape[0], -1),
                        nnx.Linear(size * size, 16, rngs=rngs), nnx.relu,
                        nnx.Linear(16, 10, rngs=rngs))


def test_membership_rows_average_over_each_subgroup():
  rows = membership_matrix(ops.D4_SUBGROUPS)
  np.testing.assert_allclose(rows.sum(1), 1.0)
  for row, name in zip(rows, ops.D4_SUBGROUPS):
    assert set(np.flatnonzero(row)) == set(ops.d4_elements(name))


def test_transformed_copies_are_the_d4_isometries():
  x = jax.random.normal(jax.random.key(0), (2, 5, 5, 1))
  copies = transformed_copies(x)
  assert copies.shape == (8, 2, 5, 5, 1)
  np.testing.assert_array_equal(copies[1], jnp.rot90(x, 1, axes=(1, 2)))
  np.testing.assert_array_equal(copies[4], x[:, :, ::-1])
  with pytest.raises(ValueError, match="expected square images"):
    transformed_copies(jnp.zeros((1, 5, 6, 1)))


def test_every_readout_is_exactly_invariant_to_its_subgroup_and_no_other():
  selector = SubgroupSelector(_mlp())
  x = jax.random.normal(jax.random.key(1), (4, 7, 7, 1))
  base = selector.subgroup_logits(x)                                   # [10, 4, 10]
  for g in range(8):
    moved = selector.subgroup_logits(ops.apply_element("D4", g, x, axes=(1, 2)))
    for index, name in enumerate(selector.candidates):
      error = float(jnp.max(jnp.abs(moved[index] - base[index])))
      if g in ops.d4_elements(name):
        assert error < 1e-5, (name, g, error)
      else:
        assert error > 1e-3, (name, g, error)


def test_the_selection_gradient_is_q_times_the_centred_score():
  """Score of H: the mean over its elements of log CE(f(h·x)), minus β·log|H|."""
  selector = SubgroupSelector(_mlp(), size_prior=0.1, warmup_steps=0)
  selector.logits[...] = jax.random.normal(jax.random.key(2), (10,))
  x = jax.random.normal(jax.random.key(3), (8, 7, 7, 1))
  labels = jnp.arange(8) % 10
  grads = nnx.jit(nnx.grad(lambda m: m.objective(x, labels)[0],
                           argnums=nnx.DiffState(0, nnx.OfType(type(selector.logits)))))(
                               selector)
  q = np.asarray(selector.probabilities(), np.float64)
  views = np.stack([np.asarray(selector.backbone(ops.apply_element("D4", g, x, axes=(1, 2))),
                               np.float64) for g in range(8)])        # f(g·x): [8, B, K]
  log_probs = views - np.log(np.exp(views).sum(-1, keepdims=True))
  ce = -log_probs[:, np.arange(8), np.asarray(labels)].mean(1)       # numpy re-derivation
  scores = np.asarray([np.mean(np.log(ce[list(ops.d4_elements(n))]))
                       - 0.1 * np.log(ops.group_order(n)) for n in selector.candidates])
  expected = q * (scores - np.sum(q * scores))
  np.testing.assert_allclose(np.asarray(grads.logits[...]), expected, rtol=1e-4, atol=1e-7)


def test_no_selection_gradient_during_the_warmup_and_the_step_is_counted():
  selector = SubgroupSelector(_mlp(), warmup_steps=2)
  x = jax.random.normal(jax.random.key(3), (8, 7, 7, 1))
  labels = jnp.arange(8) % 10
  only_logits = nnx.DiffState(0, nnx.OfType(type(selector.logits)))
  for call in range(3):
    grads = nnx.grad(lambda m: m.objective(x, labels)[0], argnums=only_logits)(selector)
    opened = np.any(np.asarray(grads.logits[...]) != 0)
    assert opened == (call >= 2)
  assert int(selector.selection_step[...]) == 3


def test_commitment_needs_one_subgroup_within_the_distance():
  selector = SubgroupSelector(_mlp())
  assert selector.committed_subgroup(0.5) is None                     # uniform: 0.9 from a vertex
  selector.logits[...] = jnp.zeros(10).at[ops.D4_SUBGROUPS.index("D2")].set(10.0)
  assert selector.committed_subgroup(0.01) == "D2"
  assert selector.committed_subgroup(1e-5) is None
  with pytest.raises(ValueError, match="within: 0"):
    selector.committed_subgroup(0)


@pytest.mark.parametrize("kwargs, message", [
    ({"candidates": ("C4", "C8")}, "'C8' is not a subgroup of D4"),
    ({"candidates": ("C4", "D4")}, "trivial group"),
    ({"candidates": ("C4", "C4", "trivial")}, "distinct names"),
    ({"size_prior": -1.0}, "size_prior: -1.0"),
    ({"warmup_steps": 1.5}, "warmup_steps: 1.5"),
])
def test_bad_options_are_refused_in_one_line(kwargs, message):
  with pytest.raises(ValueError, match=message):
    SubgroupSelector(_mlp(), **kwargs)


def test_the_selection_logits_get_the_logits_learning_rate():
  labels = nnx.to_flat_state(parameter_groups(SubgroupSelector(_mlp())))
  named = {"/".join(map(str, path)): label for path, label in labels}
  assert named.pop("logits") == "logits"
  assert named and set(named.values()) == {"weights"}


@pytest.mark.parametrize("group", ops.D4_SUBGROUPS)
def test_the_toy_teacher_student_recovers_every_subgroup(group):
  result = identify_subgroup(group, steps=250, batch=128, hidden=64, stop_when_committed=True)
  assert result["identified"] == group, result
  assert result["committed_at"] is not None and result["committed_at"] <= 250
