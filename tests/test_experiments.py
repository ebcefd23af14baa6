"""Experiment grids (``experiments/``): expansion, sharding, dry runs, skip/resume decisions,
tabulation from synthetic results, and one real tiny grid on MNIST."""

import io
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from experiments import grid as grid_lib  # noqa: E402
from experiments import tables  # noqa: E402
from experiments.paper_tables import ENTROPY_WEIGHT, GRIDS  # noqa: E402
from experiments.spec import Grid, Paper, Row  # noqa: E402

PAPER_MD = os.path.join(REPO, "docs", "paper_reference.md")


def _main(*argv):
  out = io.StringIO()
  code = grid_lib.main(list(argv), out=out)
  return code, out.getvalue()


# --------------------------------------------------------------------------------------------
# Grids and expansion
# --------------------------------------------------------------------------------------------
def test_paper_grids_have_the_expected_rows():
  assert {"table1", "table2", "table3", "table4", "smoke"} <= set(GRIDS)
  table1 = {row.name: row for row in GRIDS["table1"].rows}
  for prefix, config in (("rotated", "rotated_mnist"), ("scaled", "scaled_mnist")):
    assert table1[f"{prefix}_gcnn16"].config == f"configs/{config}.py:gcnn16"
    assert table1[f"{prefix}_gcnn32"].config == f"configs/{config}.py:gcnn"
    assert dict(table1[f"{prefix}_wscnn_norm"].overrides) == {}
    assert dict(table1[f"{prefix}_wscnn_norm_ent"].overrides) == {
        "entropy_weight": ENTROPY_WEIGHT}
  assert ENTROPY_WEIGHT > 0  # "+ ent" rows must differ from "+ norm" ones
  assert table1["rotated_cnn"].paper == Paper(98.48, "± .08", "412 K")
  assert table1["scaled_gcnn16"].paper.accuracy == 97.50
  assert [r.name for r in GRIDS["table2"].rows] == [
      "resnet32", "resnet64", "resnet128", "gresnet", "wsresnet_norm", "wsresnet_norm_ent"]
  assert {r.config for r in GRIDS["table3"].rows} >= {
      "configs/partial_rotation.py:wscnn,90", "configs/partial_rotation.py:wscnn,180"}
  assert [r.config.split(":")[0] for r in GRIDS["table4"].rows] == [
      "configs/flipped_cifar10.py"] * 4
  for name in ("table1", "table2", "table3", "table4"):
    assert all(row.paper is not None for row in GRIDS[name].rows)
    assert GRIDS[name].seeds == (0, 1, 2)


def test_paper_numbers_are_the_papers():
  """Every published accuracy (with its printed ±) appears in docs/paper_reference.md §6."""
  with open(PAPER_MD, encoding="utf-8") as file:
    text = file.read()
  section = text[text.index("## §6"):]
  for name in ("table1", "table2", "table3", "table4"):
    for row in GRIDS[name].rows:
      printed = f"{row.paper.accuracy:.2f} {row.paper.printed}"
      assert printed in section, (name, row.name, printed)
      if row.paper.params:
        assert f"| {row.paper.params} |" in section, (name, row.name, row.paper.params)


def test_every_paper_row_resolves_to_a_valid_config(tmp_path):
  """Each row's config file, variant and overrides load and validate as ds_symmetry.main's."""
  seen = {}
  for grid in GRIDS.values():
    for run in grid_lib.expand(grid, str(tmp_path), seeds=[3]):
      config = grid_lib.resolve_config(run)
      assert config["seed"] == 3
      seen[run.key] = config
  assert seen["table1/rotated_gcnn16/seed3"]["model_options"]["channels"] == 16
  assert seen["table1/rotated_gcnn32/seed3"]["model_options"]["channels"] == 32
  assert seen["table1/scaled_wscnn_norm_ent/seed3"]["entropy_weight"] == 1e-3
  assert seen["table1/scaled_wscnn_norm_ent/seed3"]["protocol"] == "scaled_mnist"
  assert seen["table1/rotated_wscnn_norm/seed3"]["entropy_weight"] == 0.0
  assert seen["table1/rotated_wscnn_norm/seed3"]["norm_weight"] == 0.1
  assert seen["table2/resnet128/seed3"]["model_options"]["channels"] == 128
  assert seen["table2/wsresnet_norm_ent/seed3"]["entropy_weight"] == 1e-3
  assert seen["table3/wscnn_rot180/seed3"]["protocol_options"] == {"max_angle_deg": 180.0}
  assert seen["table3/gcnn16_rot90/seed3"]["protocol_options"] == {"max_angle_deg": 90.0}
  assert seen["table4/gresnet/seed3"]["protocol"] == "flipped_cifar10"
  assert seen["smoke/cnn/seed3"]["limit_train"] == 256


def test_expand_names_workdirs_overrides_and_order(tmp_path):
  grid = GRIDS["table1"]
  runs = grid_lib.expand(grid, str(tmp_path), sets={"num_epochs": "1", "entropy_weight": "0.5"})
  assert len(runs) == len(grid.rows) * 3
  # Seed-major: every row's seed 0 first.
  assert [r.seed for r in runs[:len(grid.rows)]] == [0] * len(grid.rows)
  assert [r.row.name for r in runs[:len(grid.rows)]] == [row.name for row in grid.rows]
  run = next(r for r in runs if r.key == "table1/rotated_wscnn_norm_ent/seed2")
  assert run.workdir == str(tmp_path / "table1" / "rotated_wscnn_norm_ent" / "seed2")
  assert run.log_path == run.workdir + ".log" and run.lock_path == run.workdir + ".lock"
  assert dict(run.overrides) == {"entropy_weight": "0.5", "num_epochs": "1"}  # --set wins
  assert grid_lib.command(run, python="python") == [
      "python", "-m", "ds_symmetry.main", "--config=configs/rotated_mnist.py:wscnn",
      f"--workdir={run.workdir}", "--config.entropy_weight=0.5", "--config.num_epochs=1",
      "--config.seed=2"]
  only = grid_lib.expand(grid, str(tmp_path), seeds=(5,),
                         rows=grid_lib.select_rows(grid, "scaled_*,rotated_cnn"))
  assert [r.key for r in only] == ["table1/rotated_cnn/seed5"] + [
      f"table1/{row.name}/seed5" for row in grid.rows if row.name.startswith("scaled_")]


def test_shards_partition_the_grid(tmp_path):
  grid = GRIDS["table2"]
  full = [r.key for r in grid_lib.expand(grid, str(tmp_path))]
  shards = [[r.key for r in grid_lib.expand(grid, str(tmp_path), shard=(i, 4))]
            for i in range(4)]
  assert sorted(sum(shards, [])) == sorted(full)
  assert len(set(sum(shards, []))) == len(full)
  assert max(map(len, shards)) - min(map(len, shards)) <= 1
  assert shards[1] == full[1::4]


def test_argument_parsing_errors():
  assert grid_lib.parse_seeds("0,1,2") == (0, 1, 2)
  assert grid_lib.parse_seeds("0-3,7") == (0, 1, 2, 3, 7)
  assert grid_lib.parse_seeds(None) is None
  assert grid_lib.parse_shard("2/3") == (2, 3)
  assert grid_lib.parse_sets(["num_epochs=1", "config.model_options.channels=8"]) == {
      "num_epochs": "1", "model_options.channels": "8"}
  for bad in ("a", "1,1", "-1", ""):
    if bad:
      with pytest.raises(ValueError, match="seeds"):
        grid_lib.parse_seeds(bad)
  for bad in ("3/3", "1", "a/b", "-1/2"):
    with pytest.raises(ValueError, match="shard"):
      grid_lib.parse_shard(bad)
  with pytest.raises(ValueError, match="seeds"):
    grid_lib.parse_sets(["seed=3"])
  with pytest.raises(ValueError, match="key=value"):
    grid_lib.parse_sets(["num_epochs"])
  with pytest.raises(ValueError, match="match no row"):
    grid_lib.select_rows(GRIDS["table1"], "nope*")
  with pytest.raises(ValueError, match="grid"):
    grid_lib.get_grid("table9")
  with pytest.raises(ValueError, match="Row.name"):
    Row("a/b", "configs/x.py:y", "x")
  with pytest.raises(ValueError, match="duplicate"):
    Grid("g", "t", (Row("a", "configs/x.py:y", "x"), Row("a", "configs/x.py:y", "x")))


def test_dry_run_prints_exact_commands_and_runs_nothing(tmp_path):
  code, out = _main("run", "--grid=table3", f"--root={tmp_path}", "--seeds=0,4", "--dry-run",
                    "--set", "num_epochs=1", "--shard=0/2")
  assert code == 0
  commands = [line for line in out.splitlines() if not line.startswith("#")]
  runs = grid_lib.expand(GRIDS["table3"], str(tmp_path), seeds=(0, 4), sets={"num_epochs": "1"},
                         shard=(0, 2))
  assert len(commands) == len(runs) == 6
  for line, run in zip(commands, runs):
    assert shlex.split(line) == grid_lib.command(run)
  assert f"commands run from {REPO}" in out
  assert "--config=configs/partial_rotation.py:gcnn16,90" in commands[0]
  assert not os.listdir(tmp_path)


def test_bad_override_fails_before_anything_runs(tmp_path):
  code, out = _main("run", "--grid=smoke", f"--root={tmp_path}", "--set", "num_epoch=3")
  assert code == 2 and "nothing was run" in out and "num_epochs" in out
  code, out = _main("run", "--grid=smoke", f"--root={tmp_path}", "--set", "num_epochs=x")
  assert code == 2 and "num_epochs=x" in out
  assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------------------------
# Skip / resume decisions
# --------------------------------------------------------------------------------------------
def _write_json(path, value):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as file:
    json.dump(value, file)


def _fake_results(config, accuracy, best=None, wall=100.0, free=1000, representation=0,
                  **extra):
  return {"config": config, "final_test_accuracy": accuracy,
          "best_test_accuracy": accuracy if best is None else best, "wall_time_s": wall,
          "parameters": {"free": free, "representation": representation},
          "images_per_second": 500.0, "resumed_from_step": None, "learned_symmetry": {},
          **extra}


def test_run_status_done_extend_conflict_partial_locked(tmp_path):
  run = grid_lib.expand(GRIDS["smoke"], str(tmp_path), seeds=(0,), rows=GRIDS["smoke"].rows[:1])[0]
  config = grid_lib.resolve_config(run)
  assert grid_lib.run_status(run, config) == ("new", "")

  _write_json(os.path.join(run.workdir, "config.json"), config)
  starts_over = "; no checkpoint here: starts over from step 0"
  assert grid_lib.run_status(run, config) == ("partial", "epoch 0/1" + starts_over)
  os.makedirs(os.path.join(run.workdir, "checkpoints", "3.orbax-checkpoint-tmp"))  # unfinished
  assert grid_lib.run_status(run, config) == ("partial", "epoch 0/1" + starts_over)
  newer = dict(config, new_field=1)  # a field added to the config since the run was recorded
  assert grid_lib.run_status(run, newer) == ("partial", "epoch 0/1" + starts_over)
  os.makedirs(os.path.join(run.workdir, "checkpoints", "2"))
  assert grid_lib.run_status(run, config) == ("partial", "epoch 0/1")
  status, detail = grid_lib.run_status(run, newer)  # with a checkpoint it would be resumed
  assert status == "conflict" and "new_field" in detail

  _write_json(os.path.join(run.workdir, "results.json"), _fake_results(config, 0.25))
  assert grid_lib.run_status(run, config) == ("done", "25.00%")
  harmless = dict(config, data_dir="/elsewhere", log_every_steps=7, save_figures=True)
  assert grid_lib.run_status(run, harmless)[0] == "done"
  longer = dict(config, num_epochs=5)
  assert grid_lib.run_status(run, longer) == ("extend", "num_epochs 1 -> 5")
  shutil.rmtree(os.path.join(run.workdir, "checkpoints"))  # a clone: results, no checkpoints
  assert grid_lib.run_status(run, longer) == ("extend", "num_epochs 1 -> 5" + starts_over)
  status, detail = grid_lib.run_status(run, dict(config, learning_rate=0.5))
  assert status == "conflict" and "learning_rate" in detail
  # Fields added to the config schema after a run finished do not make it stale ...
  newer = dict(config, new_field=1, model_options=dict(config["model_options"], new_option=2))
  assert grid_lib.run_status(run, newer)[0] == "done"
  # ... but a changed nested field does.
  wider = dict(config, model_options=dict(config["model_options"], channels=99))
  assert grid_lib.run_status(run, wider)[0] == "conflict"

  _write_json(run.lock_path, {"host": socket.gethostname(), "pid": os.getpid()})
  assert grid_lib.run_status(run, config)[0] == "locked"
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  _write_json(run.lock_path, {"host": socket.gethostname(), "pid": int(dead.stdout)})
  assert grid_lib.run_status(run, config)[0] == "done"  # stale lock of a dead process
  assert grid_lib._acquire_lock(run)  # pylint: disable=protected-access
  assert json.load(open(run.lock_path, encoding="utf-8"))["pid"] == os.getpid()
  grid_lib._release_lock(run)  # pylint: disable=protected-access
  assert not os.path.exists(run.lock_path)


FAKE_MAIN = """\
#!{python}
# Stands in for `python -m ds_symmetry.main`: parses the same flags, fails for seed 0, and
# writes a results.json for the others.
import json, os, sys
sys.path.insert(0, {repo!r})
from absl import flags
from ml_collections import config_flags
argv = ["fake"] + sys.argv[3:]
values = flags.FlagValues()
flags.DEFINE_string("workdir", None, "", flag_values=values)
config_flags.DEFINE_config_file("config", None, "", flag_values=values, sys_argv=argv)
os.chdir({repo!r})
values(argv)
config = values.config
if config.seed == 0:
  print("fake trainer: boom")
  sys.exit(3)
os.makedirs(values.workdir, exist_ok=True)
with open(os.path.join(values.workdir, "results.json"), "w") as file:
  json.dump({{"config": json.loads(config.to_json_best_effort(sort_keys=True)),
             "final_test_accuracy": 0.5, "best_test_accuracy": 0.5, "wall_time_s": 1.0,
             "parameters": {{"free": 10, "representation": 0}}}}, file)
print("fake trainer: ok")
"""


def test_failed_run_is_reported_and_the_grid_continues(tmp_path):
  fake = tmp_path / "fake_python"
  fake.write_text(FAKE_MAIN.format(python=sys.executable, repo=REPO))
  fake.chmod(0o755)
  root = tmp_path / "root"
  code, out = _main("run", "--grid=smoke", f"--root={root}", "--rows=cnn", "--seeds=0,1",
                    f"--python={fake}", "--quiet")
  assert code == 1
  assert "smoke/cnn/seed0: FAILED: exit status 3" in out and "fake trainer: boom" in out
  assert "smoke/cnn/seed1: finished: 50.00%" in out
  assert "1 trained, 0 skipped, 1 failed of 2 runs" in out
  assert "fake trainer: ok" not in out  # --quiet: output only in the log
  assert "fake trainer: ok" in (root / "smoke" / "cnn" / "seed1.log").read_text()
  assert not list((root / "smoke" / "cnn").glob("*.lock"))
  # Rerun: the finished one is skipped, the failed one is tried again.
  code, out = _main("run", "--grid=smoke", f"--root={root}", "--rows=cnn", "--seeds=0,1",
                    f"--python={fake}", "--quiet")
  assert "smoke/cnn/seed1: done, skipped" in out
  assert "0 trained, 1 skipped, 1 failed of 2 runs" in out and code == 1


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def _c4_stacks(workdir):
  from ds_symmetry import ops
  from ds_symmetry.run_files import save_stacks
  stack = np.asarray(ops.spatial_permutations("C4", 5))
  meta = {"lift": {"kind": "lift", "kernel_size": 5, "learned": True, "num_elements": 4,
                   "group": ""}}
  save_stacks(workdir, {"lift": stack}, meta, step=10)


MINI = Grid("mini", "Mini table", rows=(
    Row("cnn", "configs/rotated_mnist.py:cnn", "CNN", "Rotations",
        paper=Paper(98.48, "± .08", "412 K")),
    Row("wscnn", "configs/rotated_mnist.py:wscnn", "WSCNN + norm", "Rotations",
        paper=Paper(97.56, "± .07", "410 K (+ 122 K)"), note="a row note"),
    Row("extra", "configs/rotated_mnist.py:gcnn", "GCNN", "Rotations"),
), seeds=(0, 1, 2), notes=("a grid note",))


def _synthetic_root(tmp_path):
  root = tmp_path / "root"
  base = root / "mini"
  for seed, accuracy in ((0, 0.98), (1, 0.99), (2, 0.97)):
    _write_json(str(base / "cnn" / f"seed{seed}" / "results.json"),
                _fake_results({"seed": seed}, accuracy, best=accuracy + 0.001,
                              wall=3600.0 * (seed + 1), free=412170))
  for seed, accuracy in ((0, 0.96), (1, 0.97)):
    workdir = str(base / "wscnn" / f"seed{seed}")
    _write_json(os.path.join(workdir, "results.json"),
                _fake_results({"seed": seed}, accuracy, free=410890, representation=121875))
    _c4_stacks(workdir)
  # seed 2 of wscnn: interrupted at epoch 37 of 100.
  partial = base / "wscnn" / "seed2"
  _write_json(str(partial / "config.json"), {"num_epochs": 100, "num_train_steps": -1})
  with open(partial / "metrics.jsonl", "w", encoding="utf-8") as file:
    for epoch in (36, 37):
      file.write(json.dumps({"type": "eval", "epoch": epoch, "step": epoch * 10}) + "\n")
    file.write('{"type": "eval", "epo')  # cut by a kill
  # extra: seed 0 running elsewhere (a lock), seed 1 only has results.json's learned_symmetry,
  # seed 2 missing.
  _write_json(str(base / "extra" / "seed0.lock"), {"host": "gpu7", "pid": 42})
  _write_json(str(base / "extra" / "seed1" / "results.json"), _fake_results(
      {"seed": 1}, 0.5, learned_symmetry={"lift": {"kind": "lift", "group": "none",
                                                   "group_distance": 0.7,
                                                   "best_candidate": "C2"}}))
  return root


def test_markdown_table_from_synthetic_results(tmp_path):
  root = _synthetic_root(tmp_path)
  results = tables.collect(MINI, str(root))
  text = tables.format_markdown(MINI, results, str(root))
  lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
           for line in text.splitlines() if line.startswith("| `")}
  cnn, wscnn, extra = lines["`cnn`"], lines["`wscnn`"], lines["`extra`"]
  header = [c.strip() for c in text.splitlines()[4].split("|")[1:-1]]
  assert header == list(tables.MARKDOWN_COLUMNS)
  col = {name: i for i, name in enumerate(header)}
  assert cnn[col["seeds"]] == "3/3"
  assert cnn[col["final acc"]] == "98.00 ± 1.00"
  assert cnn[col["best acc"]] == "98.10 ± 1.00"
  assert cnn[col["paper"]] == "98.48 ± .08" and cnn[col["Δ"]] == "-0.48"
  assert cnn[col["params free (+repr)"]] == "412,170" and cnn[col["paper params"]] == "412 K"
  assert cnn[col["wall time"]] == "2.0 h" and cnn[col["lifting layer: group; d"]] == "–"
  assert wscnn[col["seeds"]] == "2/3 (1 partial) *"
  assert wscnn[col["final acc"]] == "96.50 ± 0.71" and wscnn[col["Δ"]] == "-1.06"
  assert wscnn[col["params free (+repr)"]] == "410,890 (+121,875)"
  assert wscnn[col["lifting layer: group; d"]] == "C4 2/2; d=0.000 ± 0.000"
  assert extra[col["seeds"]] == "1/3 (1 running) *"
  assert extra[col["final acc"]] == "50.00 (n=1)"
  assert extra[col["paper"]] == "–" and extra[col["Δ"]] == "–"
  assert extra[col["lifting layer: group; d"]] == "none(C2) 1/1; d=0.700"
  assert "incomplete: `wscnn` seed 2 (epoch 37/100; `run` resumes it)" in text
  assert "running: `extra` seed 0 (gpu7:42)" in text
  assert "missing: `extra` seed 2 (not started)" in text
  assert "`wscnn`: a row note" in text and "a grid note" in text


def test_csv_table_and_seed_discovery(tmp_path):
  root = _synthetic_root(tmp_path)
  _write_json(str(root / "mini" / "cnn" / "seed7" / "results.json"),
              _fake_results({"seed": 7}, 0.98, free=412170))
  code, out = _main("table", "--grid=table1", f"--root={root}")  # empty grid: all missing
  assert code == 0
  assert "| `rotated_cnn` | Rotations | CNN | 0/3 * | – | 98.48 ± .08 | – |" in out
  results = tables.collect(MINI, str(root))  # seed 7 is found on disk
  assert [s.seed for s in results[0].seeds] == [0, 1, 2, 7]
  rows = {r[1]: r for r in (line.split(",") for line in
                             tables.format_csv(MINI, results).splitlines()[1:])}
  cnn = dict(zip(tables.CSV_COLUMNS, rows["cnn"]))
  assert cnn["seeds_done"] == "4" and cnn["final_acc_mean"] == "98.0000"
  assert cnn["paper_acc"] == "98.48" and cnn["delta"] == "-0.4800"
  assert cnn["final_acc_per_seed"] == "0:98.00;1:99.00;2:97.00;7:98.00"
  only = tables.collect(MINI, str(root), seeds=(0,))
  assert [len(r.seeds) for r in only] == [1, 1, 1]


def test_total_wall_time_over_resumes(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  with open(workdir / "metrics.jsonl", "w", encoding="utf-8") as file:
    for step, wall in ((10, 50.0), (20, 100.0), (30, 30.0), (40, 60.0), (50, 20.0)):
      file.write(json.dumps({"type": "eval", "step": step, "wall_s": wall}) + "\n")
  # Invocations: [10, 20] (100 s), [30, 40] (60 s), then the last one from step 40 on.
  results = {"wall_time_s": 25.0, "resumed_from_step": 40}
  assert tables.total_wall_time(str(workdir), results) == 185.0
  assert tables.total_wall_time(str(workdir), {"wall_time_s": 25.0,
                                               "resumed_from_step": None}) == 25.0


# --------------------------------------------------------------------------------------------
# One real tiny grid
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_grid_end_to_end(tmp_path, mnist_dir):
  """Two seeds of a tiny CNN on 256 MNIST images (subprocesses), a table, a skipping rerun."""
  root = tmp_path / "runs"
  args = ["--grid=smoke", f"--root={root}", "--rows=cnn"]
  code, out = _main("run", *args, "--set", f"data_dir={mnist_dir}", "--quiet")
  assert code == 0, out
  assert "2 trained, 0 skipped, 0 failed of 2 runs" in out
  for seed in (0, 1):
    results = json.loads((root / "smoke" / "cnn" / f"seed{seed}" / "results.json").read_text())
    assert results["config"]["seed"] == seed and results["config"]["limit_train"] == 256
    assert results["step"] == 4
  code, table = _main("table", *args)
  assert code == 0
  row = next(line for line in table.splitlines() if line.startswith("| `cnn`"))
  assert re.search(r"\| 2/2 \| \d+\.\d\d ± \d+\.\d\d \|", row), row
  # A rerun skips both (no training process: the data_dir change does not matter).
  code, out = _main("run", *args, "--quiet")
  assert code == 0 and out.count("done, skipped") == 2
  assert "0 trained, 2 skipped, 0 failed of 2 runs" in out


def test_table_marks_runs_made_with_another_config(tmp_path):
  """Runs trained with --set (e.g. a CPU-sized num_epochs) are marked †, with the fields."""
  root = tmp_path / "root"
  grid = GRIDS["smoke"]
  for seed, epochs in ((0, 1), (1, 3)):
    run = grid_lib.expand(grid, str(root), seeds=(seed,), rows=grid.rows[:1])[0]
    config = dict(grid_lib.resolve_config(run), num_epochs=epochs, data_dir="/x",
                  progress_bar="on")
    del config["limit_test"]  # recorded before a field existed: not a deviation
    config["model_options"] = {"channels": 8}
    _write_json(os.path.join(run.workdir, "results.json"), _fake_results(config, 0.5))
  code, out = _main("table", "--grid=smoke", f"--root={root}", "--rows=cnn")
  assert code == 0
  assert "| `cnn` | Rotations | CNN (8 ch) | 2/2 † |" in out
  assert "- `cnn` seed 1 ran with num_epochs=3 (grid: 1)" in out
  assert "seed 0 ran" not in out  # data_dir / progress_bar do not count
  code, out = _main("table", "--grid=smoke", f"--root={root}", "--rows=cnn",
                    "--no-check-config", "--format=csv")
  assert code == 0 and out.splitlines()[1].endswith(",0:50.00;1:50.00,")


def test_c4_invariant_share_of_lifting_and_group_kernels():
  from experiments.lag_diagnostics import c4_invariant_share
  rng = np.random.default_rng(0)
  plane = rng.normal(size=(3, 3))
  isotropic = sum(np.rot90(plane, t) for t in range(4))  # unchanged by a quarter turn
  assert c4_invariant_share(isotropic.reshape(1, 1, 9), 3) == pytest.approx(1.0)
  cancelling = plane - np.rot90(plane, 1) + np.rot90(plane, 2) - np.rot90(plane, 3)
  assert c4_invariant_share(cancelling.reshape(1, 1, 9), 3) == pytest.approx(0.0, abs=1e-12)
  # a group-layer kernel whose input element q is the q-th turn of one plane is invariant under
  # turn-and-shift, whichever way the shift runs
  for direction in (1, -1):
    twisted = np.stack([np.rot90(plane, direction * q) for q in range(4)]).reshape(1, 1, 36)
    assert c4_invariant_share(twisted, 3) == pytest.approx(1.0)
  assert 0.3 < c4_invariant_share(rng.normal(size=(16, 8, 36)), 3) < 0.7


def test_generator_weights_reads_the_stack_through_run_files(tmp_path):
  from ds_symmetry import run_files  # pylint: disable=import-outside-toplevel
  from ds_symmetry.ops import groups  # pylint: disable=import-outside-toplevel
  from experiments.generator_weights import NAMES, generator_weights
  d4 = np.asarray(groups.spatial_permutations("D4", 3))
  layers = {"convs/0": {"kind": "lift", "kernel_size": 3, "learned": True, "num_elements": 4,
                        "group": ""}}
  run_files.save_stacks(tmp_path, {"convs/0": d4[[0, 5, 0, 5]]}, layers, step=1)
  weights = generator_weights(str(tmp_path))
  assert NAMES[int(np.argmax(weights))] == "f1" and weights.max() == pytest.approx(1.0, abs=1e-4)
  with pytest.raises(FileNotFoundError, match="stacks.npz"):
    generator_weights(str(tmp_path / "absent"))


def test_lag_diagnostics_reads_the_same_budget_runs_at_the_grid_layout(tmp_path):
  from experiments.lag_diagnostics import rounded_run_against_gcnn, seed0
  from experiments.spec import run_path
  assert seed0(str(tmp_path), "gcnn") == run_path(str(tmp_path), "same_budget", "gcnn", 0)
  assert rounded_run_against_gcnn(str(tmp_path)) is None  # no runs there
