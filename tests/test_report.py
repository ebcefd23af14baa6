"""The report command on workdirs of models without learned stacks, and on missing runs."""

import json

from ds_symmetry import report


def test_report_of_a_plain_model_run_without_stacks(tmp_path, capsys):
  (tmp_path / "results.json").write_text(json.dumps({
      "model": "cnn", "protocol": "rotated_mnist", "final_test_accuracy": 0.9,
      "best_test_accuracy": 0.91, "best_epoch": 3,
      "parameters": {"free": 412170, "representation": 0}}))
  assert report.main([str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert "final test accuracy 90.00%" in out and "no learned weight-sharing layers" in out


def test_report_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
  assert report.main([str(tmp_path / "nothing")]) == 1
  assert "stacks.npz not found" in capsys.readouterr().err
