"""The trainer's quarter-epoch evaluations and its discover-and-fine-tune option: end-to-end
training runs on real MNIST, so in the slow set (``pytest -m slow``) like the trainer's others."""

import numpy as np
import pytest

from ds_symmetry import report, run_files
from ds_symmetry.run_files import read_jsonl
from ds_symmetry.train import train_and_evaluate
from test_train import tiny_config


@pytest.mark.slow
def test_evaluations_every_quarter_epoch(tmp_path, mnist_dir):
  config = tiny_config(mnist_dir, num_epochs=1, limit_train=512, evals_per_epoch=4,
                       save_figures=False)  # 8 steps per epoch
  train_and_evaluate(config, str(tmp_path))
  evals = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["type"] == "eval"]
  assert [r["step"] for r in evals] == [2, 4, 6, 8]
  assert [r["epochs_done"] for r in evals] == [0.25, 0.5, 0.75, 1.0]
  assert all("layers" in r for r in evals)  # the symmetry summaries at every one


@pytest.mark.slow
def test_discover_then_fine_tune_and_resume(tmp_path, mnist_dir):
  overrides = dict(limit_train=512, discovery={"at_step": 8, "require_group": False},
                   save_figures=False)
  config = tiny_config(mnist_dir, num_epochs=2, **overrides)
  config.model_options.factorise, config.model_options.tie = "kronecker", "cayley"
  summary = train_and_evaluate(config, str(tmp_path))
  records = read_jsonl(tmp_path / "metrics.jsonl")
  found = [r for r in records if r["type"] == "discovered"]
  assert len(found) == 1 and found[0]["step"] == 8
  assert 0.0 <= found[0]["test_accuracy_before"] <= 1.0
  assert 0.0 <= found[0]["test_accuracy_after"] <= 1.0
  assert summary["discovery"]["step"] == 8
  assert (tmp_path / "discovered_stacks.npz").exists()
  with np.load(tmp_path / "stacks.npz") as data:
    lifting = data["stack/convs/0"]
  # after the discovery every stack is a frozen 0/1 permutation stack
  assert set(np.unique(lifting).tolist()) <= {0.0, 1.0}
  np.testing.assert_array_equal(lifting.sum(-1), 1.0)
  # resume with more epochs: the frozen stacks come back, training goes on from step 16
  longer = tiny_config(mnist_dir, num_epochs=3, **overrides)
  longer.model_options.factorise, longer.model_options.tie = "kronecker", "cayley"
  resumed = train_and_evaluate(longer, str(tmp_path))
  assert resumed["resumed_from_step"] == 16 and resumed["step"] == 24
  with np.load(tmp_path / "stacks.npz") as data:
    np.testing.assert_array_equal(data["stack/convs/0"], lifting)


@pytest.mark.slow
def test_discover_and_reinitialize_restarts_from_the_initial_weights(tmp_path, mnist_dir):
  import jax
  from flax import nnx
  from ds_symmetry.train import restore
  config = tiny_config(mnist_dir, num_epochs=1, limit_train=512,
                       discovery={"at_step": 8, "require_group": False, "reinitialize": True},
                       save_figures=False)  # 8 steps: the last checkpoint is the discovery's
  config.model_options.factorise, config.model_options.tie = "kronecker", "cayley"
  train_and_evaluate(config, str(tmp_path))
  found = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["type"] == "discovered"]
  assert len(found) == 1 and found[0]["reinitialized"] is True
  model, _, step = restore.load_model(tmp_path)
  initial = restore.build_model(config, restore.NUM_CLASSES)
  assert step == 8 and restore.frozen_stacks(model)
  # every weight is the initial draw again; the stacks are the discovered permutations
  weights = jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))
  initial_weights = dict(jax.tree_util.tree_leaves_with_path(nnx.state(initial, nnx.Param)))
  assert weights
  for path, value in weights:
    np.testing.assert_array_equal(value, initial_weights[path], err_msg=str(path))


def _peaked_on_the_quarter_turn(monkeypatch, peak):
  """Builds every model with its power_blend generator weights peaked on the 90° rotation
  (candidate 1): a lifting stack already close to C4 at step 0."""
  import jax.numpy as jnp
  from ds_symmetry.nn import weight_sharing_layers
  from ds_symmetry.train import restore
  build = restore.build_model

  def build_peaked(config, num_classes, discovered=None):
    model = build(config, num_classes, discovered)
    lift = weight_sharing_layers(model)[0][1]
    if lift.is_learned:
      lift.logits[...] = jnp.zeros((1, 7)).at[0, 1].set(peak)
    return model

  monkeypatch.setattr(restore, "build_model", build_peaked)


def _power_blend_config(mnist_dir, discovery=None, **overrides):
  overrides = dict(dict(save_figures=False), **overrides)
  config = tiny_config(mnist_dir, num_epochs=1, limit_train=512,  # 8 steps
                       discovery=dict({"check_every_steps": 2}, **(discovery or {})), **overrides)
  config.model_options.factorise, config.model_options.tie = "kronecker", "cyclic"
  config.model_options.elements = "power_blend"
  config.model_options.constraint = "isometries"
  config.model_options.logits_init = "zeros"
  config.logits_learning_rate = 1e-6  # the stack stays where the test put it
  return config


@pytest.mark.slow
def test_discover_when_the_lifting_stack_has_committed(tmp_path, mnist_dir, monkeypatch):
  """``discovery.when_within``: no discovery while the stack is farther than the distance; at
  the first check within it, the model is rounded to its C4 G-CNN and is exactly invariant to
  quarter turns."""
  import jax
  from ds_symmetry.discovery import discover_group
  from ds_symmetry.nn import weight_sharing_layers
  from ds_symmetry.train import restore
  _peaked_on_the_quarter_turn(monkeypatch, peak=4.0)
  probe = restore.build_model(_power_blend_config(mnist_dir), restore.NUM_CLASSES)
  lift = weight_sharing_layers(probe)[0][1]
  distance = float(discover_group(np.asarray(lift.representation_stack()),
                                  lift.kernel_size).projection_distances.max())
  assert 0.05 < distance < 0.6

  far = tmp_path / "far"
  train_and_evaluate(_power_blend_config(mnist_dir, {"when_within": distance / 2}), str(far))
  assert not [r for r in read_jsonl(far / "metrics.jsonl") if r["type"] == "discovered"]
  assert not (far / "discovered_stacks.npz").exists()

  near = tmp_path / "near"
  summary = train_and_evaluate(
      _power_blend_config(mnist_dir, {"when_within": distance * 1.5, "reinitialize": True},
                          save_figures=True), str(near))
  found = [r for r in read_jsonl(near / "metrics.jsonl") if r["type"] == "discovered"]
  assert len(found) == 1 and found[0]["step"] == 2
  assert found[0]["trigger"] == "discovery.when_within" and found[0]["group"] == "C4"
  assert summary["discovery"]["step"] == 2
  model, _, step = restore.load_model(near)
  assert step == 8 and restore.frozen_stacks(model)
  x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
  np.testing.assert_allclose(model(np.rot90(x, 1, axes=(1, 2))), model(x), atol=1e-4)
  # what it learned before the rounding is kept, plotted and reported beside the exact stacks
  learned = run_files.load_learned_at_discovery(near)["convs/0"]
  assert 0.05 < np.abs(learned - restore.frozen_stacks(model)["convs/0"]).max() < 1
  assert "figures/convs_0_stack_at_discovery.png" in summary["figures"]
  text = report.format_report(str(near))
  assert "rounded to its discovered G-CNN at step 2 (discovery.when_within" in text
  assert "just before the rounding (step 2)" in text


def _selector_config(mnist_dir, stop_after=False, keep_backbone=False, expand_backbone=False,
                     then_train=False):
  from ds_symmetry.train.variants import model_options
  config = tiny_config(mnist_dir, num_epochs=2, limit_train=256, save_figures=False,
                       discovery={"when_within": 0.5, "check_every_steps": 2,
                                  "stop_after": stop_after, "keep_backbone": keep_backbone,
                                  "expand_backbone": expand_backbone, "then_train": then_train},
                       logits_learning_rate=1.0)
  config.unlock()
  config.model = "subgroup_cnn"
  config.model_options = model_options("subgroup_cnn", 4)
  config.model_options.warmup_steps = 2
  config.model_options.size_prior = 1.0  # the largest group wins at once: a fast commitment
  config.lock()
  return config


def test_a_selector_run_commits_stops_and_resumes_as_the_exact_gcnn(tmp_path, mnist_dir):
  from ds_symmetry.models.networks import ConvNet
  from ds_symmetry.nn import weight_sharing_layers
  from ds_symmetry.train import restore
  summary = train_and_evaluate(_selector_config(mnist_dir, stop_after=True),
                               str(tmp_path))
  found = summary["discovery"]
  assert found["group"] == "D4" and found["order"] == 8 and found["rebuilt"]
  assert found["reinitialized"] and found["wall_s"] > 0
  assert summary["step"] == found["step"] < 8                    # stopped at the rounding
  assert abs(sum(found["subgroup_probabilities"].values()) - 1) < 1e-5
  model, _, _ = restore.load_model(str(tmp_path))
  assert isinstance(model, ConvNet)
  assert {layer.group for _, layer in weight_sharing_layers(model)} == {"D4"}
  # without the stop, the same workdir trains the exact G-CNN on to the end of its budget
  resumed = train_and_evaluate(_selector_config(mnist_dir), str(tmp_path))
  assert resumed["step"] == 8 and resumed["discovery"]["step"] == found["step"]


def test_a_selector_run_that_keeps_its_backbone_trains_it_averaged_over_the_answer(
    tmp_path, mnist_dir, monkeypatch):
  """discovery.keep_backbone: at the commitment the model becomes the selector's backbone
  averaged over the answer, with the backbone's weights as they were (its readout of the
  answer unchanged), trains on to the end, and a resumed run rebuilds the same model."""
  from ds_symmetry import discovery as discovery_lib
  from ds_symmetry.nn import GroupAveraged
  from ds_symmetry.train import restore
  kept = {}
  real = discovery_lib.discover_subgroup_gcnn

  def spy(selector, build=None, *, keep_backbone=False, expand_backbone=False):
    found = real(selector, build, keep_backbone=keep_backbone, expand_backbone=expand_backbone)
    images = np.random.default_rng(0).normal(size=(3, 28, 28, 1)).astype(np.float32)
    selector.eval()
    found.model.eval()
    kept["before"], kept["after"] = np.asarray(selector(images)), np.asarray(found.model(images))
    selector.train()
    found.model.train()
    return found

  monkeypatch.setattr(discovery_lib, "discover_subgroup_gcnn", spy)
  summary = train_and_evaluate(_selector_config(mnist_dir, keep_backbone=True), str(tmp_path))
  found = summary["discovery"]
  assert found["group"] == "D4" and found["kept_backbone"] and not found["rebuilt"]
  assert not found["reinitialized"] and summary["step"] == 8 and found["step"] < 8
  np.testing.assert_allclose(kept["after"], kept["before"], rtol=1e-5, atol=1e-5)
  model, _, step = restore.load_model(str(tmp_path))
  assert isinstance(model, GroupAveraged) and model.group == "D4" and step == 8
  images = np.random.default_rng(1).normal(size=(2, 28, 28, 1)).astype(np.float32)
  np.testing.assert_allclose(model(np.rot90(images, 1, axes=(1, 2))), model(images),
                             rtol=1e-4, atol=1e-5)
  # the finished run, run again, resumes at its end with the same averaged model
  again = train_and_evaluate(_selector_config(mnist_dir, keep_backbone=True), str(tmp_path))
  assert again["step"] == 8 and again["discovery"]["kept_backbone"]
  assert again["final_test_accuracy"] == summary["final_test_accuracy"]
  text = report.format_report(str(tmp_path))
  assert "rounded to its backbone averaged over the discovered group at step" in text
  assert "averaged over D4 (nn.GroupAveraged, exactly D4-invariant)" in text


def test_a_selector_run_that_expands_its_backbone_trains_the_answers_gcnn_from_its_filters(
    tmp_path, mnist_dir):
  """discovery.expand_backbone: at the commitment the model becomes the answer's exact G-CNN
  carrying the backbone's filters (models.gcnn_from_cnn), trains on to the end, a resumed run
  rebuilds it from the checkpoint, and the report says what it is."""
  from ds_symmetry.models.networks import ConvNet
  from ds_symmetry.nn import weight_sharing_layers
  from ds_symmetry.train import restore
  config = _selector_config(mnist_dir, keep_backbone=True, expand_backbone=True)
  summary = train_and_evaluate(config, str(tmp_path))
  found = summary["discovery"]
  assert found["group"] == "D4" and found["kept_backbone"] and found["expanded_backbone"]
  assert not found["rebuilt"] and not found["reinitialized"] and summary["step"] == 8
  assert found["learning_rate"] == pytest.approx(config.learning_rate / 8)  # 1/|D4|
  model, _, step = restore.load_model(str(tmp_path))
  assert isinstance(model, ConvNet) and step == 8
  layers = [layer for _, layer in weight_sharing_layers(model)]
  assert {layer.group for layer in layers} == {"D4"}
  assert {layer.kernel_mask for layer in layers} == {"none"}
  # trained after the expansion: the zero group slices have moved
  hidden = np.asarray(layers[1].weight[...])
  assert np.count_nonzero(hidden) > hidden.size // 8
  images = np.random.default_rng(1).normal(size=(2, 28, 28, 1)).astype(np.float32)
  np.testing.assert_allclose(model(np.rot90(images, 1, axes=(1, 2))), model(images),
                             rtol=1e-4, atol=1e-5)
  again = train_and_evaluate(config, str(tmp_path))
  assert again["step"] == 8 and again["final_test_accuracy"] == summary["final_test_accuracy"]
  text = report.format_report(str(tmp_path))
  assert "rounded to its backbone expanded into the discovered group's G-CNN at step" in text
  assert f"its filters on the identity slices), learning rate {config.learning_rate / 8:g}" in text


def test_identify_then_train_trains_the_named_gcnn_for_the_whole_budget_and_resumes(
    tmp_path, mnist_dir):
  """discovery.then_train: the selector's run ends at its commitment in <workdir>/identify;
  the named group's exact G-CNN (the fixed prior's config, variants.answer_config) then trains
  the whole budget in <workdir>/trained; results.json joins them; a rerun trains nothing."""
  from ds_symmetry.models.networks import ConvNet
  from ds_symmetry.nn import weight_sharing_layers
  from ds_symmetry.train import restore
  from ds_symmetry.train.variants import answer_config
  config = _selector_config(mnist_dir, then_train=True)
  summary = train_and_evaluate(config, str(tmp_path))
  found, stages = summary["discovery"], summary["stages"]
  assert found["group"] == "D4"
  assert stages["identify"]["step"] == found["step"] < 8          # ended at the commitment
  assert stages["trained"]["step"] == 8                          # then the whole budget
  assert summary["step"] == found["step"] + 8
  assert summary["final_test_accuracy"] == stages["trained"]["final_test_accuracy"]
  assert run_files.read_results(tmp_path)["config"]["discovery"]["then_train"] is True
  assert run_files.read_config(tmp_path / "trained") == run_files.config_as_dict(
      answer_config(config, "D4"))
  model, _, _ = restore.load_model(str(tmp_path / "trained"))
  assert isinstance(model, ConvNet)
  assert {layer.group for _, layer in weight_sharing_layers(model)} == {"D4"}
  text = report.format_report(str(tmp_path))
  assert f"identified D4 at step {found['step']}, then its D4 G-CNN trained 8 steps" in text
  assert "the run ended at the commitment (discovery.stop_after)" in text
  assert "(the rounded model, untrained: the run ended there)" in text
  again = train_and_evaluate(config, str(tmp_path))             # both stages finished
  assert again["stages"]["trained"]["step"] == 8 and again["resumed_from_step"] == 8
  assert again["discovery"]["step"] == found["step"]
  other = _selector_config(mnist_dir, then_train=True)
  other.seed = 5
  with pytest.raises(ValueError, match="seed"):                  # another config: refused
    train_and_evaluate(other, str(tmp_path))
