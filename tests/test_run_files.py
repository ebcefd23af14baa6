"""``ds_symmetry.run_files``: every workdir file's writer and reader, atomic writes, config
diffs; and ``ds_symmetry.train.load_model``, the model of a workdir."""

import json
import os
import re
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from ds_symmetry import run_files, workdir_lock
from ds_symmetry.nn import parameter_groups, weight_sharing_layers
from ds_symmetry.train import base_config, load_model, make_mesh
from ds_symmetry.train import restore, steps
from ds_symmetry.train.checkpointing import Checkpointer
from ds_symmetry.train.config import config_differences

LAYERS = {"convs/0": {"kind": "lift", "kernel_size": 5, "learned": True, "num_elements": 4,
                      "group": ""}}


def test_atomic_write_replaces_whole_files_and_keeps_the_old_one_on_failure(tmp_path):
  target = tmp_path / "results.json"
  run_files.write_json(target, {"a": 1})
  with pytest.raises(RuntimeError):
    with run_files.atomic_write(target) as file:
      file.write('{"a": 2, "b": ')
      raise RuntimeError("killed mid-write")
  assert json.loads(target.read_text()) == {"a": 1}
  assert os.listdir(tmp_path) == ["results.json"]  # no temporary file left
  with pytest.raises(RuntimeError):
    with run_files.atomic_write(tmp_path / "new.npz", "wb") as file:
      raise RuntimeError("before anything was written")
  assert not (tmp_path / "new.npz").exists()


def test_json_files_round_trip_with_non_finite_as_null(tmp_path):
  config = dict(run_files.config_as_dict(base_config()), model_options={"channels": 4})
  run_files.write_config(tmp_path, config)
  assert run_files.read_config(tmp_path) == config
  run_files.write_results(tmp_path, {"loss": float("nan"), "accuracy": np.float32(0.5),
                                     "curve": np.arange(3)})
  assert run_files.read_results(tmp_path) == {"accuracy": 0.5, "curve": [0, 1, 2], "loss": None}
  assert run_files.read_results(tmp_path / "missing") is None


def test_unreadable_json_is_an_error_naming_the_file_unless_lenient(tmp_path):
  (tmp_path / "config.json").write_text('{"model": "ws')
  with pytest.raises(run_files.UnreadableRunFile, match="config.json is unreadable"):
    run_files.read_config(tmp_path)
  assert run_files.read_config(tmp_path, strict=False) is None


@pytest.mark.parametrize("content, found", [
    ("[1, 2, 3]", "a JSON list"), ('"a string"', "a JSON str"),
    ('{"lr": 0.1}', "an object with the fields ['lr']")])
def test_a_config_json_that_is_not_ours_is_unreadable_naming_what_it_holds(tmp_path, content,
                                                                          found):
  (tmp_path / "config.json").write_text(content)
  with pytest.raises(run_files.UnreadableRunFile,
                     match=rf"config\.json is not this library's config \(found {re.escape(found)}"):
    run_files.read_config(tmp_path)
  with pytest.raises(run_files.UnreadableRunFile, match="Nothing was changed"):
    run_files.workdir_kind(tmp_path)
  assert run_files.workdir_kind(tmp_path, adopt=True) == "adopted"


def test_workdir_kind_tells_new_runs_and_other_directories(tmp_path):
  assert run_files.workdir_kind(tmp_path / "absent") == "new"
  assert run_files.workdir_kind(tmp_path) == "new"
  (tmp_path / run_files.LOCK).write_text("{}")  # a lock alone: an interrupted start
  assert run_files.workdir_kind(tmp_path) == "new"
  (tmp_path / "figures").mkdir()
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(run_files.NotARunError,
                     match=r"is not a run of this library \(no config\.json; it holds figures/, "
                           r"notes\.txt\)\. Nothing was changed.*--adopt_workdir"):
    run_files.workdir_kind(tmp_path)
  assert run_files.workdir_kind(tmp_path, adopt=True) == "adopted"
  run_files.write_config(tmp_path, run_files.config_as_dict(base_config()))
  assert run_files.workdir_kind(tmp_path) == "run"


def test_a_damaged_middle_line_keeps_every_intact_record(tmp_path):
  """One damaged line used to end the readable records: a resume then cut the 14 after it."""
  for step in range(1, 7):
    run_files.append_metrics(tmp_path, {"type": "train", "step": step})
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines(keepends=True)
  lines[2] = '{"type": "tra\x00\x00 damaged\n'
  (tmp_path / "metrics.jsonl").write_text("".join(lines) + '{"type": "eval", "st')
  assert [r["step"] for r in run_files.read_metrics(tmp_path)] == [1, 2, 4, 5, 6]
  assert run_files.scan_jsonl(tmp_path / "metrics.jsonl")[1] == [(3, lines[2].rstrip("\n"))]
  assert run_files.keep_metrics(tmp_path, 5) == 1
  assert [r["step"] for r in run_files.read_metrics(tmp_path)] == [1, 2, 4, 5]
  assert (tmp_path / run_files.DAMAGED_METRICS).read_text() == lines[2]  # set aside, not lost
  assert run_files.keep_metrics(tmp_path, 5) == 0  # the rewritten file is clean


def test_metrics_append_read_cut_line_and_resume(tmp_path):
  for step in (1, 2, 3):
    run_files.append_metrics(tmp_path, {"type": "train", "step": step, "loss": 1.0 / step})
  run_files.append_metrics(tmp_path, {"type": "eval", "step": 3, "test_loss": float("inf")})
  with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as file:
    file.write('{"type": "train", "st')  # a line cut by a kill
  records = run_files.read_metrics(tmp_path)
  assert [r["step"] for r in records] == [1, 2, 3, 3]
  assert run_files.read_metrics(tmp_path, "eval") == [
      {"type": "eval", "step": 3, "test_loss": None}]
  run_files.keep_metrics(tmp_path, 2)  # a run resumed from step 2
  assert [r["step"] for r in run_files.read_metrics(tmp_path)] == [1, 2]
  run_files.keep_metrics(tmp_path, None)  # a run starting over
  assert run_files.read_metrics(tmp_path) == []
  assert run_files.read_metrics(tmp_path / "missing") == []


def test_stacks_round_trip_and_damaged_files(tmp_path):
  stack = np.stack([np.eye(25, dtype=np.float32)] * 4)
  assert run_files.load_stacks(tmp_path) is None
  run_files.save_stacks(tmp_path, {"convs/0": stack}, LAYERS, step=6)
  stacks, meta = run_files.load_stacks(tmp_path)
  np.testing.assert_array_equal(stacks["convs/0"], stack)
  assert meta == {"step": 6, "layers": LAYERS}
  data = (tmp_path / "stacks.npz").read_bytes()
  (tmp_path / "stacks.npz").write_bytes(data[:len(data) // 2])
  with pytest.raises(run_files.UnreadableRunFile, match="stacks.npz is unreadable"):
    run_files.load_stacks(tmp_path)
  run_files.save_stacks(tmp_path, {"convs/0": stack}, {}, step=6)  # stacks without metadata
  with pytest.raises(run_files.UnreadableRunFile):
    run_files.load_stacks(tmp_path)


def test_discovered_stacks_round_trip(tmp_path):
  assert run_files.load_discovered(tmp_path) is None
  stack = np.stack([np.eye(9, dtype=np.float32)] * 2)
  run_files.save_discovered(tmp_path, {"convs/0": stack}, {"step": 8, "group": "C2"})
  stacks, record = run_files.load_discovered(tmp_path)
  np.testing.assert_array_equal(stacks["convs/0"], stack)
  assert record == {"step": 8, "group": "C2"}
  assert run_files.load_learned_at_discovery(tmp_path) == {}  # written without them
  blurred = np.full_like(stack, 1 / 9)
  run_files.save_discovered(tmp_path, {"convs/0": stack}, {"step": 8}, {"convs/0": blurred})
  assert list(run_files.load_discovered(tmp_path)[0]) == ["convs/0"]  # the frozen ones only
  np.testing.assert_array_equal(run_files.load_learned_at_discovery(tmp_path)["convs/0"],
                                blurred)


def test_learned_stacks_at_discovery_absent_without_a_discovery(tmp_path):
  assert run_files.load_learned_at_discovery(tmp_path) is None


def test_remove_outputs_removes_only_what_a_finished_run_leaves(tmp_path):
  for name in ("results.json", "stacks.npz", "discovered.json", "config.json",
               "metrics.jsonl"):
    (tmp_path / name).write_text("x")
  (tmp_path / "figures").mkdir()
  (tmp_path / "figures" / "a.png").write_text("x")
  removed = run_files.remove_outputs(tmp_path)
  assert sorted(os.path.basename(p) for p in removed) == ["discovered.json", "figures",
                                                           "results.json", "stacks.npz"]
  assert sorted(os.listdir(tmp_path)) == ["config.json", "metrics.jsonl"]


def test_config_diffs_are_by_dotted_field():
  saved = {"learning_rate": 0.1, "num_epochs": 1, "model_options": {"channels": 4}}
  current = {"learning_rate": 0.1, "num_epochs": 3, "new_field": 1,
             "model_options": {"channels": 8, "new_option": 2}}
  assert run_files.diff_configs(saved, current) == [
      ("model_options.channels", 4, 8), ("model_options.new_option", run_files.ABSENT, 2),
      ("new_field", run_files.ABSENT, 1), ("num_epochs", 1, 3)]
  assert run_files.diff_configs(saved, current, recorded_only=True) == [
      ("model_options.channels", 4, 8), ("num_epochs", 1, 3)]
  # The trainer's rule: length and bookkeeping fields may change on resume, nothing else.
  assert config_differences(saved, current) == (["num_epochs"], ["model_options", "new_field"])
  assert config_differences(saved, dict(current, model_options={"channels": 4}),
                            recorded_only=True) == (["num_epochs"], [])


def _tiny_config():
  config = base_config()
  config.model_options.channels = 2
  config.model_options.num_blocks = 2
  return config


def _write_run(workdir, config, model, step=3):
  """A workdir with config.json and one checkpoint of ``model``'s train state."""
  tx = steps.make_optimizer(config, parameter_groups(model), 10)
  train_steps = steps.Steps(steps.TrainState(model, tx), lambda key, x: x, seed=0,
                            weights=steps.regularizer_weights(config), mesh=make_mesh())
  run_files.write_config(workdir, run_files.config_as_dict(config))
  checkpointer = Checkpointer(run_files.path(workdir, run_files.CHECKPOINTS), keep=2)
  checkpointer.save(step, train_steps.checkpoint(train_steps.initial_state))
  checkpointer.close()


def _params(model):
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def test_load_model_rebuilds_the_config_and_restores_the_checkpoint(tmp_path):
  config = _tiny_config()
  trained = restore.build_model(config, 10)
  for _, layer in weight_sharing_layers(trained):  # parameters no fresh model has
    layer.weight[...] = layer.weight[...] + 1.0
  _write_run(tmp_path, config, trained)
  model, loaded_config, step = load_model(tmp_path)
  assert step == 3 and loaded_config.model_options.channels == 2
  jax.tree.map(np.testing.assert_array_equal, _params(model), _params(trained))
  assert not all(layer.is_fixed for _, layer in weight_sharing_layers(model))


def test_load_model_of_a_discovered_run_freezes_its_stacks(tmp_path):
  config = _tiny_config()
  discovered = restore.build_model(config, 10)
  stacks = {name: np.asarray(layer.representation_stack()).round()
            for name, layer in weight_sharing_layers(discovered)}
  restore.freeze(discovered, stacks)
  run_files.save_discovered(tmp_path, restore.frozen_stacks(discovered), {"step": 2})
  _write_run(tmp_path, config, discovered, step=3)
  model, _, _ = load_model(tmp_path)
  assert all(layer.is_fixed for _, layer in weight_sharing_layers(model))
  jax.tree.map(np.testing.assert_array_equal, _params(model), _params(discovered))
  with pytest.raises(ValueError, match="does not have"):
    restore.freeze(restore.build_model(config, 10), {"nope": stacks["convs/0"]})


def test_the_reports_discovered_cache_follows_the_checkpoints_content(tmp_path, monkeypatch):
  """A run started over on another machine writes new checkpoints at the old steps: their
  cached discovered-G-CNN entries must be measured again, not reused."""
  import types  # pylint: disable=import-outside-toplevel
  import ds_symmetry.data  # pylint: disable=import-outside-toplevel
  from experiments import same_budget_report  # pylint: disable=import-outside-toplevel
  # pylint: disable-next=import-outside-toplevel
  from ds_symmetry.train.checkpointing import checkpoint_digest
  config = _tiny_config()
  _write_run(tmp_path, config, restore.build_model(config, 10))
  digest = checkpoint_digest(run_files.path(tmp_path, run_files.CHECKPOINTS), 3)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(8, 28, 28, 1)).astype(np.float32)
  monkeypatch.setattr(ds_symmetry.data, "make_protocol", lambda *a, **k: types.SimpleNamespace(
      test_images=images, test_labels=np.arange(8) % 10))
  gone = {"group": None, "is_group": False, "learned_accuracy": 0.5}  # its checkpoint is gone
  stale = {"group": None, "is_group": False, "learned_accuracy": 0.123,
           "checkpoint_sha256": "0" * 64}
  run_files.write_json(run_files.path(tmp_path, run_files.DISCOVERED_CURVE),
                       {"1": gone, "3": stale})
  curve = same_budget_report.discovered_curve(str(tmp_path))
  assert [entry["step"] for entry in curve] == [1, 3]
  assert curve[0]["learned_accuracy"] == 0.5
  assert curve[1]["checkpoint_sha256"] == digest
  assert curve[1]["learned_accuracy"] in {i / 8 for i in range(9)}  # measured on the 8 images
  # measured once: a second call reads the cache (loading the model would fail now)
  monkeypatch.setattr("ds_symmetry.train.load_model", lambda *a, **k: 1 / 0)
  assert same_budget_report.discovered_curve(str(tmp_path)) == curve


# --------------------------------------------------------------------------------------------
# The workdir lock
# --------------------------------------------------------------------------------------------
def _dead_pid():
  process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
  return int(process.stdout)


def test_one_owner_at_a_time_and_the_holder_is_named(tmp_path):
  path = tmp_path / "workdir.lock"
  first = workdir_lock.WorkdirLock(path, what="workdir 'x'")
  first.acquire()
  holder = json.loads(path.read_text())
  assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
  with pytest.raises(workdir_lock.WorkdirLocked,
                     match=rf"workdir 'x' is in use by another process \({socket.gethostname()}:"
                           rf"{os.getpid()} \(since"):
    workdir_lock.WorkdirLock(path, what="workdir 'x'").acquire()
  first.release()
  assert not path.exists() and os.listdir(tmp_path) == []
  with workdir_lock.WorkdirLock(path) as second:
    assert second.held and path.exists()
  assert not path.exists()


def test_a_lock_held_by_another_live_process_is_refused(tmp_path):
  path = tmp_path / "workdir.lock"
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from ds_symmetry.workdir_lock import "
       f"WorkdirLock; WorkdirLock({str(path)!r}).acquire(); print('held', flush=True); "
       "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(workdir_lock.WorkdirLocked, match=rf":{holder.pid} "):
      workdir_lock.WorkdirLock(path).acquire()
    holder.kill()  # SIGKILL: no cleanup runs, the file stays, the flock goes
    holder.wait()
    assert path.exists()
    assert workdir_lock.is_stale(workdir_lock.read_holder(path), path)
    with workdir_lock.WorkdirLock(path):
      assert json.loads(path.read_text())["pid"] == os.getpid()
  finally:
    holder.kill()
    holder.wait()


def test_a_stale_lock_is_taken_over_with_one_warning(tmp_path, caplog):
  path = tmp_path / "workdir.lock"
  path.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
  with caplog.at_level("WARNING"):
    with workdir_lock.WorkdirLock(path):
      pass
  warnings = [r for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "took over the lock" in warnings[0].getMessage()
  assert "\n" not in warnings[0].getMessage()


def test_a_live_pid_without_the_flock_is_stale_and_another_hosts_lock_is_not(tmp_path):
  path = tmp_path / "workdir.lock"
  # pid 1 runs, but holds no flock on this file: a reused pid, the holder is gone.
  path.write_text(json.dumps({"host": socket.gethostname(), "pid": 1}))
  assert workdir_lock.is_stale(workdir_lock.read_holder(path), path)
  path.write_text(json.dumps({"host": "another-host", "pid": _dead_pid()}))
  assert not workdir_lock.is_stale(workdir_lock.read_holder(path), path)
  with pytest.raises(workdir_lock.WorkdirLocked, match="another-host"):
    workdir_lock.WorkdirLock(path).acquire()
  path.write_text('{"host": "cut')  # a lock file cut mid-write, nobody holding it
  assert workdir_lock.is_stale(workdir_lock.read_holder(path), path)


def test_claim_refuses_a_non_run_untouched_and_removes_a_directory_it_made(tmp_path):
  other = tmp_path / "thesis"
  (other / "figures").mkdir(parents=True)
  (other / "figures" / "thesis_plot.png").write_bytes(b"png")
  with pytest.raises(run_files.NotARunError):
    workdir_lock.claim_workdir(other)
  assert sorted(p.name for p in other.rglob("*")) == ["figures", "thesis_plot.png"]
  fresh = tmp_path / "fresh" / "run"
  claim = workdir_lock.claim_workdir(fresh)
  assert claim.kind == "new" and (fresh / run_files.LOCK).exists()
  claim.release()  # nothing was written: the directory it created goes again
  assert not fresh.exists()
