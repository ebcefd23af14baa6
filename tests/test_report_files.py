"""The report on damaged or inconsistent workdirs: one clear error, never a traceback."""

import json

import numpy as np

from ds_symmetry import report
from ds_symmetry.run_files import save_stacks

RESULTS = {"model": "wscnn", "protocol": "rotated_mnist", "final_test_accuracy": 0.5,
           "best_test_accuracy": 0.5, "best_epoch": 1,
           "parameters": {"free": 1000, "representation": 1875}}


def _stacks(workdir):
  stack = np.stack([np.eye(25, dtype=np.float32)] * 4)
  save_stacks(workdir, {"convs/0": stack},
              {"convs/0": {"kind": "lift", "kernel_size": 5, "learned": True,
                           "num_elements": 4, "group": ""}}, step=6)


def test_truncated_results_json_is_a_clear_error(tmp_path, capsys):
  _stacks(tmp_path)
  (tmp_path / "results.json").write_text(json.dumps(RESULTS)[:40])
  assert report.main([str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert "results.json is unreadable" in err and "Traceback" not in err


def test_truncated_stacks_is_a_clear_error(tmp_path, capsys):
  _stacks(tmp_path)
  data = (tmp_path / "stacks.npz").read_bytes()
  (tmp_path / "stacks.npz").write_bytes(data[:len(data) // 2])
  (tmp_path / "results.json").write_text(json.dumps(RESULTS))
  assert report.main([str(tmp_path)]) == 1
  assert "stacks.npz is unreadable" in capsys.readouterr().err


def test_learned_model_without_stacks_is_not_reported_as_plain(tmp_path, capsys):
  (tmp_path / "results.json").write_text(json.dumps(RESULTS))
  assert report.main([str(tmp_path)]) == 1
  captured = capsys.readouterr()
  assert "no learned weight-sharing layers" not in captured.out
  assert "stacks.npz is missing" in captured.err and "'wscnn'" in captured.err


def test_intact_workdir_still_reports(tmp_path, capsys):
  _stacks(tmp_path)
  (tmp_path / "results.json").write_text(json.dumps(RESULTS))
  assert report.main([str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert "convs/0" in out and "model wscnn" in out


def test_a_run_rounded_to_its_discovered_gcnn_reports_when_and_which_group(tmp_path, capsys):
  """The report of a rounded run names the group, the step and the rounding's distances, and
  judges the learned stacks just before it (a blurred C4) and the exact ones after (C4, 0)."""
  from ds_symmetry.ops.groups import spatial_permutations
  from ds_symmetry.run_files import save_discovered
  exact = np.asarray(spatial_permutations("C4", 5), np.float32)
  blurred = 0.9 * exact + 0.1 / 25
  layer = {"kind": "lift", "kernel_size": 5, "learned": False, "num_elements": 4, "group": ""}
  save_stacks(tmp_path, {"convs/0": exact}, {"convs/0": layer}, step=40)
  save_discovered(tmp_path, {"convs/0": exact},
                  {"step": 25, "group": "C4", "projection_distances": [0.0, 0.1, 0.2, 0.1],
                   "trigger": "discovery.when_within", "reinitialized": True,
                   "test_accuracy_before": 0.381, "test_accuracy_after": 0.078},
                  {"convs/0": blurred})
  (tmp_path / "results.json").write_text(json.dumps(RESULTS))
  assert report.main([str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert "no learned weight-sharing layers" not in out
  assert ("rounded to its discovered G-CNN at step 25 (discovery.when_within; weights "
          "re-drawn): C4") in out
  assert "0.000, 0.100, 0.200, 0.100" in out and "38.10% just before, 7.80% after" in out
  before, after = out.split("the exact stacks it has trained with since:")
  assert "just before the rounding (step 25)" in before
  blurred_line = next(line for line in before.splitlines() if line.startswith("convs/0"))
  exact_line = next(line for line in after.splitlines() if line.startswith("convs/0"))
  assert blurred_line.split()[4] == "C4" and 0.05 < float(blurred_line.split()[5]) < 0.5
  assert exact_line.split()[4:6] == ["C4", "0.0000"]


def test_discovered_stacks_from_another_run_are_a_clear_error(tmp_path, capsys):
  from ds_symmetry.run_files import save_discovered
  _stacks(tmp_path)
  save_discovered(tmp_path, {"convs/9": np.eye(25, dtype=np.float32)[None]}, {"step": 2,
                                                                               "group": "C1"})
  assert report.main([str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert "convs/9" in err and "different runs" in err and "Traceback" not in err


def test_a_selector_runs_report_names_its_subgroup_and_the_probabilities(tmp_path):
  from ds_symmetry.run_files import save_discovered
  save_stacks(tmp_path, {}, {}, step=6)
  (tmp_path / "results.json").write_text(json.dumps(dict(RESULTS, model="subgroup_cnn")))
  save_discovered(tmp_path, {}, {"step": 4, "group": "C4", "trigger": "discovery.when_within",
                                 "reinitialized": True, "test_accuracy_before": 0.5,
                                 "test_accuracy_after": 0.1,
                                 "subgroup_probabilities": {"C2": 0.03, "C4": 0.96,
                                                            "trivial": 0.01}})
  text = report.format_report(str(tmp_path))
  assert "at step 4 (discovery.when_within; weights re-drawn): C4" in text
  assert "subgroup probabilities C4 0.960, C2 0.030, trivial 0.010;" in text
  assert "trained since as the exact C4 G-CNN (no learned stacks)" in text
  assert "layer " not in text and "nearest:" not in text   # no empty stack table
