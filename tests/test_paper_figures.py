"""experiments.paper_figures regenerates the figures from a workdir's outputs."""

import json
import os

import numpy as np

from ds_symmetry import ops
from ds_symmetry.run_files import save_stacks
from experiments import paper_figures


def _workdir(tmp_path):
  lift = np.asarray(ops.spatial_permutations("C4", 5))[[0, 2, 1, 3]]       # shuffled elements
  group = np.asarray(ops.shift_twist_permutations("C4", 3))
  meta = {"convs/0": {"kind": "lift", "kernel_size": 5, "learned": True, "num_elements": 4,
                      "group": ""},
          "convs/1": {"kind": "group", "kernel_size": 3, "learned": True, "num_elements": 4,
                      "group": ""}}
  save_stacks(tmp_path, {"convs/0": lift, "convs/1": group}, meta,
              step=20)
  records = [{"type": "train", "step": 10, "train_loss": 2.3},
             {"type": "eval", "step": 20, "train_loss": 2.0, "test_accuracy": 0.4}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  return tmp_path


def test_figures_from_a_workdir(tmp_path, capsys):
  workdir = _workdir(tmp_path)
  written = paper_figures.make_figures(str(workdir))
  names = sorted(os.path.basename(path) for path in written)
  assert names == ["fig3_lifting_stack.png", "fig9_10_convs_1.png", "training_curves.png"]
  for path in written:
    assert os.path.getsize(path) > 1000
  assert "fig. 2 skipped" in capsys.readouterr().out      # no checkpoint in this workdir


def test_assigned_reference_undoes_a_shuffle():
  stack = np.asarray(ops.spatial_permutations("C4", 5))[[0, 2, 1, 3]]
  reference, distance = paper_figures._assigned_reference(stack, "C4", 5, "lift")  # pylint: disable=protected-access
  np.testing.assert_array_equal(reference, stack)
  assert distance == 0.0
