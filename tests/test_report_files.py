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
