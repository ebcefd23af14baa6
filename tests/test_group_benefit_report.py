"""experiments.group_benefit: the accuracy table of item 5 and its verdicts."""

import json

from experiments import group_benefit


def _run(data, model, seed, accuracy, group=None, step=None, curve=None, wall_s=60.0):
  return {"data": data, "model": model, "seed": seed, "status": "done", "accuracy": accuracy,
          "group": group, "discovered_at": step, "curve": curve or [], "wall_s": wall_s}


def test_the_table_compares_the_discovered_model_with_every_fixed_prior():
  records = [_run("mirrored", "cnn", 100, 96.0), _run("mirrored", "cnn", 101, 96.4),
             _run("mirrored", "C4", 100, 90.0), _run("mirrored", "C4", 101, 91.0),
             _run("mirrored", "flip", 100, 97.0), _run("mirrored", "flip", 101, 97.2),
             _run("mirrored", "discovered", 100, 96.5, "flip", 280),
             _run("mirrored", "discovered", 101, 95.0, "D2", 300),
             _run("mirrored", "kept", 100, 96.8, "flip", 280),
             _run("mirrored", "kept", 101, 96.6, "flip", 290),
             _run("mirrored", "expanded", 100, 97.4, "flip", 280),
             _run("mirrored", "expanded", 101, 97.0, "flip", 290),
             {"data": "partial180", "model": "C4", "seed": 100, "status": "diverged"}]
  text = group_benefit.table(records)
  row = next(line for line in text.splitlines() if line.startswith("| mirrored |"))
  assert "**97.1** (97.0 / 97.2) (flip)" in row          # the data's group's G-CNN
  assert "| **95.8** (96.5 / 95.0) (flip @ 280, D2 @ 300) |" in row
  assert "| **96.7** (96.8 / 96.6) (flip @ 280, flip @ 290) |" in row
  assert "| **97.2** (97.4 / 97.0) (flip @ 280, flip @ 290) |" in row
  # identified (by the kept runs: flip both times), then the flip G-CNN trained: its runs
  assert row.count("| **97.1** (97.0 / 97.2) (flip @ 280, flip @ 290) [composed] |") == 1
  # fresh: 95.75 < 97.1 - 1; kept: 96.7 >= 96.1; expanded 97.2; then trained 97.1; all above
  # C4's 90.5
  assert row.endswith("| no / yes / yes / yes | yes / yes / yes / yes |")
  assert ("| partial180 | – | – | none exact | – | – | – | – | – / – / – / – | – / – / – / – |"
          in text)
  assert "Not finished: partial180/C4/seed100 (diverged)" in text


def test_collect_reads_finished_runs_and_marks_the_rest(tmp_path):
  workdir = tmp_path / "group_benefit" / "mirrored_discovered" / "seed100"
  workdir.mkdir(parents=True)
  (workdir / "results.json").write_text(json.dumps({
      "status": "finished", "final_test_accuracy": 0.9612, "step": 750, "wall_time_s": 300.0,
      "discovery": {"group": "flip", "step": 290}}))
  (workdir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in (
      {"type": "train", "step": 50, "accuracy": 0.5},
      {"type": "eval", "step": 375, "test_accuracy": 0.8},
      {"type": "discovered", "step": 290, "group": "flip"},
      {"type": "eval", "step": 750, "test_accuracy": 0.9612})) + "\n")
  (tmp_path / "group_benefit" / "mirrored_cnn" / "seed101").mkdir(parents=True)
  records = group_benefit.collect(str(tmp_path))
  assert {(r["model"], r["seed"], r["status"]) for r in records} == {
      ("discovered", 100, "done"), ("cnn", 101, "missing")}
  done = next(r for r in records if r["status"] == "done")
  assert (done["accuracy"], done["group"], done["discovered_at"]) == (96.12, "flip", 290)
  assert done["curve"] == [[375, 80.0], [750, 96.12]]                  # the eval records only


def test_the_verdicts_compare_on_the_seeds_each_row_ran():
  """A row with fewer seeds is judged against the fixed rows' means over its own seeds."""
  records = [_run("mirrored", "cnn", s, a) for s, a in ((100, 90.0), (101, 90.0), (102, 80.0))]
  records += [_run("mirrored", "C4", s, 70.0) for s in (100, 101, 102)]
  records += [_run("mirrored", "flip", s, a) for s, a in ((100, 92.0), (101, 92.0), (102, 80.0))]
  records += [_run("mirrored", "kept", s, a, "flip", 300)
              for s, a in ((100, 91.5), (101, 91.5), (102, 79.0))]
  records += [_run("mirrored", "discovered", s, 90.5, "flip", 300) for s in (100, 101)]
  row = next(line for line in group_benefit.table(records).splitlines()
             if line.startswith("| mirrored |"))
  # kept 87.33 vs flip 88.0 over 100-102: within; fresh 90.5 vs flip 92.0 over 100-101: not
  # (against the 3-seed flip mean, 88.0, it would have been "yes").
  assert row.endswith("| no / yes / – / yes | yes / yes / – / yes |")
  assert "(seeds 100, 101 only)" in row


def test_a_cell_names_its_seeds_when_some_did_not_run():
  records = [_run("mirrored", "cnn", 100, 90.0), _run("mirrored", "cnn", 101, 92.0),
             _run("mirrored", "flip", 100, 91.0)]
  row = next(line for line in group_benefit.table(records).splitlines()
             if line.startswith("| mirrored |"))
  assert "| **91.0** (90.0 / 92.0) |" in row and "| 91.0 (seed 100 only) (flip) |" in row


def test_the_curves_table_has_one_row_per_run_of_the_seed_and_a_column_per_step():
  records = [_run("mirrored", "kept", 100, 91.0, "flip", 390, [[375, 84.0], [750, 91.0]], 112),
             _run("mirrored", "cnn", 100, 90.0, curve=[[375, 83.5], [750, 90.0]], wall_s=55),
             _run("mirrored", "cnn", 101, 89.0, curve=[[375, 83.0], [750, 89.0]]),
             _run("partial180", "cnn", 100, 88.0, curve=[[750, 88.0]])]
  lines = group_benefit.curves_table(records).splitlines()
  assert lines[2] == "| run | 375 | 750 |"
  assert lines[4:] == ["| mirrored: CNN | 83.5 | 90.0 |",
                       "| mirrored: discovered, backbone kept (flip from step 390) | 84.0 | 91.0 |"]
  assert "No evaluation curves of seed 7" in group_benefit.curves_table(records, seed=7)


def test_the_tuning_table_compares_kept_and_expanded_on_the_validation_split():
  records = [_run("rotated_mirrored", "kept", 0, 70.0, "D4", 320),
             _run("rotated_mirrored", "kept", 1, 72.0, "D4", 330),
             _run("rotated_mirrored", "expanded", 0, 73.5, "D4", 320),
             _run("rotated_mirrored", "expanded", 1, 74.5, "D4", 330),
             _run("mirrored", "kept", 0, 90.0, "flip", 390),
             {"data": "mirrored", "model": "expanded", "seed": 0, "status": "running"}]
  text = group_benefit.tuning_table(records)
  assert "tuning seeds 0, 1" in text
  row = next(line for line in text.splitlines() if line.startswith("| rotated_mirrored |"))
  assert row == ("| rotated_mirrored | **71.0** (70.0 / 72.0) (D4 @ 320, D4 @ 330) | "
                 "**74.0** (73.5 / 74.5) (D4 @ 320, D4 @ 330) | – | +3.0 | – |")
  assert "| mirrored | 90.0 (seed 0 only) (flip @ 390) | – | – | – | – |" in text
  # no fixed runs: identify-then-train has nothing to take, and says which runs it needs
  assert "rotated_mirrored/then_trained/seed0 (needs the fixed row rotated_mirrored_D4)" in text
  assert "adopted" not in text
  assert "Not finished: mirrored/expanded/seed0 (running)" in text


def test_main_with_tuning_writes_the_tuning_summary_table_and_block(tmp_path):
  workdir = tmp_path / "runs" / "benefit_tuning" / "mirrored_expanded" / "seed1"
  workdir.mkdir(parents=True)
  (workdir / "results.json").write_text(json.dumps({
      "status": "finished", "final_test_accuracy": 0.878, "step": 750, "wall_time_s": 74.0,
      "discovery": {"group": "flip", "step": 380}}))
  (workdir / "metrics.jsonl").write_text("")
  page = tmp_path / "page.md"
  page.write_text("before\n<!-- benefit-tuning:start -->\n<!-- benefit-tuning:end -->\nafter\n")
  out = tmp_path / "out"
  assert group_benefit.main(["--tuning", "--root", str(tmp_path / "runs"), "--out", str(out),
                             "--write_into", str(page)]) == 0
  table = (out / "table.md").read_text()
  assert "tuning seeds 1 " in table and "| mirrored | – | 87.8 (flip @ 380) | – |" in table
  assert table in page.read_text() and page.read_text().endswith("after\n")
  assert [r["model"] for r in json.loads((out / "summary.json").read_text())["records"]] == [
      "expanded"]


def test_identify_then_train_takes_the_fixed_run_of_the_group_each_identification_named():
  records = [_run("mirrored", "kept", 0, 90.0, "flip", 390),
             _run("mirrored", "kept", 1, 91.0, "C4", 380),        # a wrong answer
             _run("partial180", "kept", 0, 88.0, "trivial", 320),
             _run("partial180", "kept", 1, 88.0, None, None),     # never committed
             _run("mirrored", "flip", 0, 92.5), _run("mirrored", "flip", 1, 93.0),
             _run("mirrored", "C4", 1, 70.0), _run("partial180", "cnn", 0, 89.0)]
  records[0]["discovered_wall_s"] = 40.0
  composed = {(r["data"], r["seed"]): r for r in group_benefit.identify_then_train(records)}
  assert (composed["mirrored", 0]["accuracy"], composed["mirrored", 0]["trained"]) == (92.5,
                                                                                       "flip")
  assert composed["mirrored", 0]["wall_s"] == 100.0           # 40 s to identify + 60 s to train
  assert (composed["mirrored", 1]["accuracy"], composed["mirrored", 1]["trained"]) == (70.0, "C4")
  assert composed["mirrored", 1]["wall_s"] is None             # the identification's not known
  assert composed["partial180", 0]["trained"] == "cnn"         # trivial: the CNN
  assert composed["partial180", 1]["status"] == "no group named"


def test_the_tuning_table_applies_the_rule_to_the_runs_both_ways_have():
  records = [_run("rotated_mirrored", "kept", 0, 70.0, "D4", 320),
             _run("rotated_mirrored", "kept", 1, 72.0, "D4", 330),
             _run("rotated_mirrored", "D4", 0, 75.0), _run("rotated_mirrored", "D4", 1, 76.0),
             _run("mirrored", "kept", 0, 92.0, "flip", 390),
             _run("mirrored", "kept", 1, 90.0, "flip", 380),
             _run("mirrored", "flip", 0, 88.0)]                     # seed 1's flip run missing
  text = group_benefit.tuning_table(records)
  row = next(line for line in text.splitlines() if line.startswith("| rotated_mirrored |"))
  assert row.endswith("| **75.5** (75.0 / 76.0) (D4 @ 320, D4 @ 330) | – | +4.5 |")
  # the 3 paired runs: kept (70 + 72 + 92) / 3 = 78.0, then trained (75 + 76 + 88) / 3 = 79.7
  assert "Over the 3 runs both ways have: kept backbone 78.0, identified then trained 79.7" in text
  assert "**adopted**" in text
  records[-1] = _run("mirrored", "flip", 0, 80.0)
  assert "**not adopted**" in group_benefit.tuning_table(records)


def test_the_recipes_own_two_stage_runs_replace_the_composed_cells_once_every_seed_has_one():
  records = [_run("mirrored", "kept", s, 91.0, "flip", 390) for s in (100, 101)]
  records += [_run("mirrored", "flip", 100, 90.87), _run("mirrored", "flip", 101, 92.0),
              _run("mirrored", "cnn", 100, 90.6), _run("mirrored", "cnn", 101, 90.0),
              _run("mirrored", "twostage", 100, 90.92, "flip", 380)]
  text = group_benefit.table(records)
  row = next(line for line in text.splitlines() if line.startswith("| mirrored |"))
  # seed 101 has no run of its own yet: the cell stays composed, the run is set beside it
  assert "| **91.4** (90.9 / 92.0) (flip @ 390, flip @ 390) [composed] |" in row
  assert ("beside the composed values: mirrored seed 100: 90.92 (flip @ 380), composed 90.87 "
          "(flip @ 390).") in text
  records.append(_run("mirrored", "twostage", 101, 89.0, "flip", 390))
  row = next(line for line in group_benefit.table(records).splitlines()
             if line.startswith("| mirrored |"))
  assert "| **90.0** (90.9 / 89.0) (flip @ 380, flip @ 390) [runs] |" in row
  # the runs' 89.96 against the best fixed mean, flip's 91.435: not within 1 point
  assert row.endswith("| – / yes / – / no | – / – / – / – |")  # no C4 runs here
  assert "beside the composed" not in group_benefit.table(records[:6])
