"""Toy-problem generators (App. B) and the decomposition score; the full runs are slow tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ds_symmetry import analysis, ops, toy_problems
from ds_symmetry.nn import RepresentationLogits


@pytest.mark.parametrize("group, k", [("shift8", 8), ("cube", 3), ("C4xC4", 3)])
def test_inputs_are_transformed_signals_and_targets_are_the_exact_layer(group, k):
  problem = toy_problems.make_problem(group, k, 3, noise=0.0, target="teacher",
                                      teacher_channels=2)
  data = toy_problems.sample_batch(problem, jax.random.key(0), 12)
  reps = np.asarray(ops.spatial_permutations(group, k))
  base, teacher = np.asarray(problem.base), np.asarray(problem.teacher)
  for b in range(12):
    c, g = int(data["signals"][b]), int(data["elements"][b])
    x = np.asarray(data["inputs"][b]).reshape(-1)
    np.testing.assert_allclose(x, reps[g] @ base[c], atol=1e-5)
    # y = ρ_y(g)ŷ_c: y[o, h] = ŷ_c[o, g⁻¹h] with ŷ_c[o, h] = ⟨ρ(h) θ*_o, x̂_c⟩
    inverse = ops.inverse_indices(group)[g]
    table = ops.cayley_table(group)
    y_hat = np.einsum("hnm,om,n->oh", reps, teacher, base[c])
    np.testing.assert_allclose(np.asarray(data["targets"][b]), y_hat[:, table[inverse]],
                               rtol=1e-4, atol=1e-5)


def test_one_hot_targets_partial_elements_and_noise():
  problem = toy_problems.make_problem("shift8", 8, 2, noise=0.5, elements=range(4))
  data = toy_problems.every_pair_batch(problem, jax.random.key(1))
  assert data["inputs"].shape == (8, 8, 1) and data["targets"].shape == (8, 2, 8)
  assert set(np.asarray(data["elements"]).tolist()) == {0, 1, 2, 3}
  hot = np.asarray(data["targets"]).reshape(8, -1).argmax(-1)
  np.testing.assert_array_equal(hot, np.asarray(data["signals"]) * 8 + np.asarray(
      data["elements"]))
  clean = np.einsum("bnm,bm->bn", np.asarray(ops.spatial_permutations("shift8", 8))[
      np.asarray(data["elements"])], np.asarray(problem.base)[np.asarray(data["signals"])])
  assert 0.3 < np.std(np.asarray(data["inputs"])[..., 0] - clean) < 0.7
  invariant = toy_problems.make_problem("shift8", 8, 2, task="invariant")
  assert toy_problems.sample_batch(invariant, jax.random.key(2), 5)["targets"].shape == (5, 2)


def test_decomposition_score_counts_distinct_confident_elements():
  c = np.array([[0.95, 0.05, 0.0], [0.92, 0.0, 0.08], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
  assert analysis.decomposition_score(c) == pytest.approx(2 / 4)           # 0 twice, 2 once
  assert analysis.decomposition_score(c, exclude=(0,)) == pytest.approx(1 / 4)
  assert analysis.decomposition_score(c, threshold=0.5) == pytest.approx(3 / 4)


def test_exact_stack_scores_one_and_uniform_scores_zero():
  basis = np.asarray(ops.spatial_permutations("cube", 3))
  assert analysis.decomposition_score(analysis.convex_decomposition(basis, basis)) == 1.0
  uniform = np.full((3, 27, 27), 1 / 27)
  assert analysis.decomposition_score(analysis.convex_decomposition(uniform, basis)) == 0.0


@pytest.mark.parametrize("bad_call, argument", [
    (lambda: toy_problems.make_problem("shift8", 8, 2, task="both"), "task"),
    (lambda: toy_problems.make_problem("shift8", 8, 2, target="labels"), "target"),
    (lambda: toy_problems.make_problem("shift8", 8, 0), "num_signals"),
    (lambda: toy_problems.make_problem("shift8", 8, 2, elements=[8]), "elements"),
    (lambda: toy_problems.make_problem("shift8", 5, 2), "shift8"),
    (lambda: toy_problems.make_problem("shift8", 8, 2, noise=-1.0), "noise"),
    (lambda: analysis.decomposition_score(np.ones(3)), "coefficients"),
    (lambda: analysis.decomposition_score(np.ones((2, 2)), threshold=0.0), "threshold"),
])
def test_bad_input_is_a_clear_error(bad_call, argument):
  with pytest.raises(ValueError, match=argument):
    bad_call()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shift", "cube", "c4xc4"])
def test_appendix_b_problems_reach_the_target_score(name, tmp_path):
  from experiments import appendix_b
  summary = appendix_b.run(name, out=str(tmp_path))
  assert summary["score"] >= 0.9 and summary["aligned"] == 1.0
  assert (tmp_path / f"{name}_coefficients.png").stat().st_size > 1000
  if name == "c4xc4":
    assert summary["mass_on_subgroup"] > 0.9


def test_appendix_b_run_rejects_bad_arguments():
  from experiments import appendix_b
  with pytest.raises(ValueError, match="name must be one of"):
    appendix_b.run("sphere")
  with pytest.raises(ValueError, match="restarts"):
    appendix_b.run("shift", restarts=0)


class _Toy(nnx.Module):
  """A weight and a logit vector: the two parameter groups, nothing to compile at length."""

  def __init__(self):
    self.weight = nnx.Param(jnp.ones((3,)))
    self.logits = RepresentationLogits(jnp.zeros((3,)))

  def __call__(self, x):
    return x * self.weight[...] + jax.nn.softmax(self.logits[...])


def _toy_loss(model, key, scale):
  x = jax.random.normal(key, (4, 3))
  return scale * jnp.mean((model(x) - 1.0) ** 2), jnp.mean(x)


def test_fit_uses_one_optimizer_with_the_logits_own_rate():
  layer = _Toy()
  weight, logits = np.asarray(layer.weight[...]), np.asarray(layer.logits[...])
  history = toy_problems.fit(layer, _toy_loss, 3, learning_rate=0.0, logits_learning_rate=0.1,
                             args=(jnp.float32(1.0),), record_every=2)
  assert [index for index, _ in history] == [0, 2]
  assert all(isinstance(aux, float) for _, aux in history)
  np.testing.assert_array_equal(np.asarray(layer.weight[...]), weight)  # rate 0: unchanged
  assert np.abs(np.asarray(layer.logits[...]) - logits).max() > 1e-3


def test_fit_takes_per_step_arguments_and_stops_when_asked():
  layer = _Toy()
  seen, scales = [], []

  def stop(index):
    seen.append(index)
    return index == 1

  def args(index):
    scales.append(index)
    return (jnp.float32(index),)

  assert toy_problems.fit(layer, _toy_loss, 5, learning_rate=1e-2, logits_learning_rate=1e-2,
                          args=args, stop=stop) == []
  assert seen == [0, 1] and scales == [0, 1]
  with pytest.raises(ValueError, match="steps"):
    toy_problems.fit(layer, _toy_loss, 0, learning_rate=1e-2, logits_learning_rate=1e-2)
