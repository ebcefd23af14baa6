"""The same-budget study's grid and report, on synthetic run outputs."""

import json
import os

from experiments import same_budget_report
from experiments.same_budget import PROTOCOL, SAME_BUDGET


def test_every_row_follows_the_protocol():
  for row in SAME_BUDGET.rows:
    for key, value in PROTOCOL.items():
      assert row.overrides[key] == value, (row.name, key)
  names = [row.name for row in SAME_BUDGET.rows]
  assert {"cnn", "gcnn", "wscnn_paper", "powers", "power_blend", "ablation_sinkhorn",
          "ablation_softmax", "ablation_none", "unrotated_best", "scaled_best"} <= set(names)


def _write_run(root, row, seed, accuracies, distances, done=True):
  workdir = os.path.join(root, "same_budget", row, f"seed{seed}")
  os.makedirs(workdir)
  with open(os.path.join(workdir, "metrics.jsonl"), "w", encoding="utf-8") as file:
    for index, (accuracy, distance) in enumerate(zip(accuracies, distances), start=1):
      record = {"type": "eval", "step": 100 * index, "epochs_done": 0.25 * index,
                "test_accuracy": accuracy}
      if distance is not None:
        record["layers"] = {"convs/0": {"group": "C4" if distance <= 0.5 else "none",
                                        "group_distance": distance, "distance_C4": distance}}
      file.write(json.dumps(record) + "\n")
    file.write("{\"type\": \"eval\", \"step\"")  # a line cut by a kill is ignored
  if done:
    with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as file:
      json.dump({"status": "finished"}, file)


def test_report_tabulates_every_seed_and_plots(tmp_path):
  root = str(tmp_path)
  _write_run(root, "gcnn", 0, [0.4, 0.6, 0.7, 0.8, 0.82, 0.84, 0.85, 0.9], [None] * 8)
  _write_run(root, "wscnn_paper", 0, [0.2, 0.3, 0.35, 0.4], [1.0, 0.9, 0.6, 0.45], done=False)
  _write_run(root, "wscnn_paper", 1, [0.25, 0.3], [1.0, 0.95], done=False)
  _write_run(root, "wscnn_paper", 12, [0.3], [0.9], done=False)  # a seed beyond the grid's
  os.makedirs(os.path.join(root, "same_budget", "gcnn", "seed3"))  # created, nothing logged
  summary = same_budget_report.collect(root, discover=False)
  assert set(summary) == {"gcnn", "wscnn_paper"}
  assert list(summary["wscnn_paper"]["seeds"]) == ["0", "1", "12"]
  assert list(summary["gcnn"]["seeds"]) == ["0"]
  assert [p["epochs"] for p in summary["gcnn"]["seeds"]["0"]["curve"]] == [
      0.25 * i for i in range(1, 9)]
  table = same_budget_report.markdown(summary)
  assert "| gcnn | 0 | 40.0 | 60.0 | 80.0 | 84.0 | 90.0 |" in table
  assert "wscnn_paper (running) | 0 | 20.0 | 30.0 | 40.0 |" in table
  assert "C4 (0.45)" in table
  paths = same_budget_report.plot(summary, str(tmp_path / "figures"))
  assert all(os.path.getsize(path) > 1000 for path in paths) and len(paths) == 2


def test_a_run_rounded_while_training_reports_its_group_from_the_rounding_on(tmp_path):
  import numpy as np
  from ds_symmetry import run_files
  root = str(tmp_path)
  _write_run(root, "power_blend_discover", 0, [0.3, 0.35, 0.5, 0.7], [0.9, 0.8, None, None])
  workdir = os.path.join(root, "same_budget", "power_blend_discover", "seed0")
  run_files.save_discovered(workdir, {"convs/0": np.eye(9)[None].repeat(4, 0)},
                            {"step": 250, "group": "C4", "is_group": True})
  summary = same_budget_report.collect(root, discover=False)
  run = summary["power_blend_discover"]["seeds"]["0"]
  assert run["rounded_at"] == 250
  assert [p.get("rounded", False) for p in run["curve"]] == [False, False, True, True]
  assert [p["distance_C4"] for p in run["curve"]] == [0.9, 0.8, 0.0, 0.0]
  assert "| C4 (0.00), rounded at step 250 |" in same_budget_report.markdown(summary)


def test_report_without_runs_says_so(tmp_path, capsys):
  assert same_budget_report.main([f"--root={tmp_path}", "--no-discover"]) == 1
  assert "no same_budget runs" in capsys.readouterr().err


def test_every_row_of_the_grid_gets_its_own_colour():
  styles = [same_budget_report.row_style(index) for index in range(len(SAME_BUDGET.rows))]
  assert len(SAME_BUDGET.rows) <= 20
  assert len({tuple(style["color"]) for style in styles}) == len(styles)


def test_a_blown_up_distance_is_drawn_on_the_axis_edge_not_stretching_it():
  values, off = same_budget_report.clip_to_axis([0.98, 205.0, 0.1], 1.6)
  assert values == [0.98, 1.6, 0.1] and off == [False, True, False]
  assert same_budget_report.clip_to_axis([205.0], None) == ([205.0], [False])
