"""The trainer's quarter-epoch evaluations and its discover-and-fine-tune option: end-to-end
training runs on real MNIST, so in the slow set (``pytest -m slow``) like the trainer's others."""

import numpy as np
import pytest

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
  overrides = dict(limit_train=512, discover_at_step=8, discover_require_group=False,
                   save_figures=False)
  config = tiny_config(mnist_dir, num_epochs=2, **overrides)
  config.model_options.sharing = "tied_cayley"
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
  longer.model_options.sharing = "tied_cayley"
  resumed = train_and_evaluate(longer, str(tmp_path))
  assert resumed["resumed_from_step"] == 16 and resumed["step"] == 24
  with np.load(tmp_path / "stacks.npz") as data:
    np.testing.assert_array_equal(data["stack/convs/0"], lifting)
