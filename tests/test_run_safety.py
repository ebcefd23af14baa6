"""Runs you can trust: wrong configs refused, corrupt checkpoints detected and replaced,
divergence stopped, bad flags and full disks reported in one line.

The command-line tests run ``python -m ds_symmetry.main`` on a tiny config (4 channels, 256
training images, 1 epoch of 4 steps, a checkpoint every 2 steps) and are ``slow``; each item
also has a fast in-process test.
"""

import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ds_symmetry  # noqa: F401  (fast CPU convolution flag before jax starts)
import jax
import jax.numpy as jnp
from ds_symmetry import run_files, workdir_lock
from ds_symmetry.run_files import read_jsonl
from ds_symmetry.train import train_and_evaluate
from ds_symmetry.train import checkpointing
from ds_symmetry.train.checkpointing import Checkpointer, read_checkpoint
from ds_symmetry.train.trainer import TrainingDivergedError
from test_train import REPO, _config_file, _env, tiny_config

LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [^ ]+:\d+\] ")


def cnn_overrides(**extra):
  overrides = dict(model="cnn", model_options={"channels": 4}, limit_train=256, limit_test=100,
                   num_epochs=1, save_figures=False, track_symmetry=False,
                   checkpoint_every_steps=2, log_every_steps=1)
  overrides.update(extra)
  return overrides


def tiny_cnn(data_dir, **extra):
  return tiny_config(data_dir, **cnn_overrides(**extra))


def run_cli(tmp_path, data_dir, workdir, *flags, config_overrides=None, timeout=600,
            prefix=()):
  config_file = _config_file(tmp_path, data_dir, **(config_overrides or cnn_overrides()))
  return subprocess.run(
      [*prefix, sys.executable, "-m", "ds_symmetry.main", f"--config={config_file}",
       f"--workdir={workdir}", *flags],
      env=_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result, *needles):
  """Exit status != 0, exactly one ``error:`` line holding ``needles``, no traceback, and every
  other stderr line a single-line log record (no multi-line dumps)."""
  assert result.returncode != 0, result.stderr[-3000:]
  lines = result.stderr.splitlines()
  errors = [line for line in lines if line.startswith("error: ")]
  assert len(errors) == 1, result.stderr[-3000:]
  for needle in needles:
    assert needle in errors[0], errors[0]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  strays = [line for line in lines if line.strip() and not line.startswith("error: ")
            and not LOG_LINE.match(line)]
  assert not strays, strays[:10]
  return errors[0]


def snapshot(workdir):
  """Every file under ``workdir`` with its bytes (what a refused run must not touch)."""
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as file:
        out[os.path.relpath(path, workdir)] = file.read()
  return out


def largest_file(directory):
  files = [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names]
  return max(files, key=os.path.getsize)


def flip_byte(path):
  with open(path, "r+b") as file:
    data = bytearray(file.read())
    data[len(data) // 2] ^= 0xFF
    file.seek(0)
    file.write(data)


def assert_finite_checkpoints(workdir):
  directory = os.path.join(workdir, "checkpoints")
  steps = sorted(int(n) for n in os.listdir(directory) if n.isdigit())
  assert steps
  for step in steps:
    _, state = read_checkpoint(directory, step)
    for leaf in jax.tree.leaves(state):
      leaf = np.asarray(leaf)
      if np.issubdtype(leaf.dtype, np.floating):
        assert np.all(np.isfinite(leaf)), step
  return steps


# --------------------------------------------------------------------------------------------
# 1. A different config is refused before anything is restored or written.
# --------------------------------------------------------------------------------------------
def test_other_model_in_workdir_is_refused_and_nothing_changes(tmp_path, mnist_dir):
  workdir = tmp_path / "run"
  train_and_evaluate(tiny_cnn(mnist_dir), str(workdir))
  before = snapshot(workdir)
  other = tiny_config(mnist_dir, **cnn_overrides(model="wscnn"))
  with pytest.raises(ValueError, match=r"different config \(fields \['model'"):
    train_and_evaluate(other, str(workdir))
  wider = tiny_cnn(mnist_dir, model_options={"channels": 8})
  with pytest.raises(ValueError, match="model_options"):
    train_and_evaluate(wider, str(workdir))
  assert snapshot(workdir) == before


def test_a_field_added_since_blocks_a_resume_but_not_a_start_over(tmp_path, mnist_dir):
  """A run recorded before a config field existed (its config.json lacks it): with its
  checkpoints it is not resumed under the new field, without them (a clone: checkpoints are
  not committed) it starts over from step 0, and the same run with another recorded value is
  still refused."""
  workdir = tmp_path / "run"
  train_and_evaluate(tiny_cnn(mnist_dir), str(workdir))
  config_path = workdir / "config.json"
  saved = json.loads(config_path.read_text())
  del saved["discovery"]["when_within"]
  config_path.write_text(json.dumps(saved))
  with pytest.raises(ValueError, match=r"different config \(fields \['discovery'"):
    train_and_evaluate(tiny_cnn(mnist_dir), str(workdir))
  shutil.rmtree(workdir / "checkpoints")
  with pytest.raises(ValueError, match=r"different config \(fields \['learning_rate'"):
    train_and_evaluate(tiny_cnn(mnist_dir, learning_rate=0.5), str(workdir))
  assert json.loads(config_path.read_text()) == saved
  summary = train_and_evaluate(tiny_cnn(mnist_dir), str(workdir))
  assert summary["resumed_from_step"] is None and summary["step"] == 4
  assert "when_within" in json.loads(config_path.read_text())["discovery"]
  assert (workdir / "checkpoints" / "4").is_dir()


def test_checkpoint_of_another_model_is_an_error_not_a_fresh_start(tmp_path, mnist_dir):
  """Without config.json (deleted) the directory is no longer a run: refused untouched, even
  with another learning rate (it used to resume silently). Adopted anyway, a checkpoint with
  other shapes is still not 'unreadable'."""
  workdir = tmp_path / "run"
  train_and_evaluate(tiny_cnn(mnist_dir), str(workdir))
  os.remove(workdir / "config.json")
  before = snapshot(workdir)
  with pytest.raises(run_files.NotARunError, match=r"no config\.json.*checkpoints/ but no"):
    train_and_evaluate(tiny_cnn(mnist_dir, learning_rate=0.5), str(workdir))
  assert snapshot(workdir) == before
  with pytest.raises(checkpointing.IncompatibleCheckpointError, match="another model"):
    train_and_evaluate(tiny_cnn(mnist_dir, model_options={"channels": 8}), str(workdir),
                       adopt_workdir=True)
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  assert (workdir / "results.json").exists()


@pytest.mark.slow
def test_cli_other_config_is_refused(tmp_path, mnist_dir):
  workdir = tmp_path / "run"
  first = run_cli(tmp_path, mnist_dir, workdir)
  assert first.returncode == 0, first.stderr[-3000:]
  before = snapshot(workdir)
  result = run_cli(tmp_path, mnist_dir, workdir, "--config.model_options.channels=8")
  assert_one_line_error(result, "different config", "model_options")
  assert snapshot(workdir) == before


# --------------------------------------------------------------------------------------------
# 2. A corrupted checkpoint is detected (checksum, finiteness) and the fallback is logged.
# --------------------------------------------------------------------------------------------
def _tiny_state(value):
  return {"params": {"w": jnp.full((64, 64), value, jnp.float32)},
          "step": jnp.asarray(7, jnp.int32)}


def _abstract(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def test_checksum_mismatch_and_nan_are_rejected_with_a_logged_fallback(tmp_path, caplog):
  directory = tmp_path / "checkpoints"
  checkpointer = Checkpointer(directory, keep=5)
  for step in (2, 4, 6):
    checkpointer.save(step, _tiny_state(step))
  checkpointer.close()
  # Step 6: a digest that does not match the data (what a flipped byte that still decodes gives).
  checksum_file = largest_file(directory / "6" / "checksum")
  record = json.loads(open(checksum_file, encoding="utf-8").read())
  record["sha256"] = "0" * 64
  with open(checksum_file, "w", encoding="utf-8") as file:
    json.dump(record, file)
  # Step 4: a flipped byte in the middle of its largest data file.
  flip_byte(largest_file(directory / "4" / "state"))

  checkpointer = Checkpointer(directory, keep=5)
  with caplog.at_level("WARNING"):
    step, state = checkpointer.restore(_abstract(_tiny_state(0)))
  assert step == 2 and float(state["params"]["w"][0, 0]) == 2.0
  text = caplog.text
  assert "step 6" in text and "checksum mismatch" in text
  assert "falling back to the checkpoint at step 2" in text
  assert sorted(os.listdir(tmp_path / checkpointing.REJECTED_DIR)) == ["4", "6"]
  assert checkpointer.steps() == [2]
  checkpointer.close()


def test_checkpoint_digest_is_the_saved_states_digest(tmp_path):
  checkpointer = Checkpointer(tmp_path / "checkpoints", keep=5)
  for step in (2, 4):
    checkpointer.save(step, _tiny_state(step))
  checkpointer.close()
  digests = [checkpointing.checkpoint_digest(tmp_path / "checkpoints", step) for step in (2, 4)]
  assert digests == [checkpointing.state_digest(_tiny_state(step)) for step in (2, 4)]
  assert digests[0] != digests[1]
  with pytest.raises(FileNotFoundError, match="step 3"):
    checkpointing.checkpoint_digest(tmp_path / "checkpoints", 3)


def test_a_nonfinite_state_is_never_saved(tmp_path):
  checkpointer = Checkpointer(tmp_path / "checkpoints", keep=2)
  with pytest.raises(checkpointing.NonFiniteStateError, match="step 3"):
    checkpointer.save(3, _tiny_state(float("nan")))
  assert checkpointer.steps() == []
  checkpointer.close()


@pytest.mark.slow
def test_cli_flipped_byte_falls_back_to_the_previous_checkpoint(tmp_path, mnist_dir):
  workdir = tmp_path / "run"
  first = run_cli(tmp_path, mnist_dir, workdir)
  assert first.returncode == 0, first.stderr[-3000:]
  flip_byte(largest_file(workdir / "checkpoints" / "4" / "state"))
  again = run_cli(tmp_path, mnist_dir, workdir,
                  config_overrides=cnn_overrides(num_epochs=2))
  assert again.returncode == 0, again.stderr[-3000:]
  assert "falling back to the checkpoint at step 2" in again.stderr
  assert "resuming from the checkpoint at step 2" in again.stderr
  assert os.listdir(workdir / checkpointing.REJECTED_DIR) == ["4"]
  assert assert_finite_checkpoints(workdir)[-1] == 8
  results = json.loads((workdir / "results.json").read_text())
  assert results["status"] == "finished" and results["resumed_from_step"] == 2


# --------------------------------------------------------------------------------------------
# 3. Divergence stops the run, keeps the finite checkpoints and writes what was measured.
# --------------------------------------------------------------------------------------------
def test_divergence_stops_with_finite_checkpoints_and_results(tmp_path, mnist_dir):
  workdir = tmp_path / "run"
  config = tiny_cnn(mnist_dir, model="wscnn", num_epochs=2, learning_rate=1e30,
                    checkpoint_every_steps=1)
  with pytest.raises(TrainingDivergedError, match=r"the (loss is (nan|inf)|parameters are not "
                                                  r"finite) at step \d+") as raised:
    train_and_evaluate(config, str(workdir))
  # What to change, not "rerun": the same config resumes and diverges again.
  assert re.search(r"The same command resumes from step \d+ and diverges again: train in a new "
                   r"workdir with a smaller config\.learning_rate \(this run: 1e\+30\)",
                   str(raised.value)), str(raised.value)
  results = json.loads((workdir / "results.json").read_text())
  assert results["status"] == "diverged"
  steps = assert_finite_checkpoints(workdir)
  assert results["last_checkpoint_step"] == steps[-1] < results["diverged_at_step"]
  records = read_jsonl(workdir / "metrics.jsonl")
  assert records[-1]["type"] == "diverged" and records[-1]["step"] == results["diverged_at_step"]
  assert [r["step"] for r in records if r["type"] == "train"][-1] <= results["diverged_at_step"]


@pytest.mark.slow
@pytest.mark.parametrize("learning_rate, limit_train", [(1e30, 256), (1e6, 1024)])
def test_cli_divergence_is_one_line_and_keeps_finite_checkpoints(tmp_path, mnist_dir,
                                                                   learning_rate, limit_train):
  """1e30: NaN within a few steps; 1e6: the loss grows ~30× a step until it overflows."""
  workdir = tmp_path / "run"
  result = run_cli(tmp_path, mnist_dir, workdir,
                   config_overrides=cnn_overrides(model="wscnn",
                                                  model_options={"channels": 4},
                                                  num_epochs=2, learning_rate=learning_rate,
                                                  limit_train=limit_train,
                                                  checkpoint_every_steps=1))
  assert_one_line_error(result, "training diverged", "last finite checkpoint")
  assert_finite_checkpoints(workdir)
  assert json.loads((workdir / "results.json").read_text())["status"] == "diverged"


# --------------------------------------------------------------------------------------------
# 4. A corrupt checkpoint at an existing step is replaced, so a rerun does not redo steps.
# --------------------------------------------------------------------------------------------
def _truncate_checkpoint(step_dir):
  for root, _, files in os.walk(step_dir):
    for name in files:
      if name not in ("_CHECKPOINT_METADATA", "commit_success.txt"):
        path = os.path.join(root, name)
        with open(path, "r+b") as file:
          file.truncate(os.path.getsize(path) // 2)


def test_save_replaces_an_existing_step_it_did_not_write(tmp_path):
  directory = tmp_path / "checkpoints"
  first = Checkpointer(directory, keep=3)
  first.save(2, _tiny_state(1.0))
  first.save(2, _tiny_state(9.0))  # written by this object: kept as is
  first.close()
  assert float(read_checkpoint(directory, 2)[1]["params"]["w"][0, 0]) == 1.0
  second = Checkpointer(directory, keep=3)
  second.save(2, _tiny_state(5.0))
  second.close()
  assert float(read_checkpoint(directory, 2)[1]["params"]["w"][0, 0]) == 5.0


@pytest.mark.slow
def test_corrupt_checkpoint_is_replaced_on_rerun(tmp_path, mnist_dir):
  workdir = tmp_path / "run"
  train_and_evaluate(tiny_cnn(mnist_dir), str(workdir))
  _truncate_checkpoint(workdir / "checkpoints" / "4")
  assert train_and_evaluate(tiny_cnn(mnist_dir), str(workdir))["resumed_from_step"] == 2
  assert train_and_evaluate(tiny_cnn(mnist_dir), str(workdir))["resumed_from_step"] == 4


@pytest.mark.slow
def test_cli_corrupt_checkpoint_replaced_and_warning_is_one_line(tmp_path, mnist_dir):
  workdir = tmp_path / "run"
  assert run_cli(tmp_path, mnist_dir, workdir).returncode == 0
  _truncate_checkpoint(workdir / "checkpoints" / "4")
  second = run_cli(tmp_path, mnist_dir, workdir)
  assert second.returncode == 0, second.stderr[-3000:]
  warnings = [line for line in second.stderr.splitlines()
              if "checkpoint at step 4" in line and "is rejected" in line]
  assert len(warnings) == 1 and LOG_LINE.match(warnings[0]), second.stderr[-3000:]
  assert not [line for line in second.stderr.splitlines()
              if line.strip() and not LOG_LINE.match(line)]
  third = run_cli(tmp_path, mnist_dir, workdir)
  assert third.returncode == 0, third.stderr[-3000:]
  assert "resuming from the checkpoint at step 4" in third.stderr
  assert json.loads((workdir / "results.json").read_text())["resumed_from_step"] == 4


# --------------------------------------------------------------------------------------------
# 6. An empty --workdir is refused at once. 8. Errors in one line.
# --------------------------------------------------------------------------------------------
def test_empty_workdir_is_refused_before_loading_data(tmp_path):
  config = tiny_cnn(tmp_path / "no_data_here")
  with pytest.raises(ValueError, match=r"workdir: '' is not accepted"):
    train_and_evaluate(config, "")


def test_cli_empty_workdir_is_one_line(tmp_path):
  result = run_cli(tmp_path, tmp_path / "no_data_here", "", timeout=120)
  assert_one_line_error(result, "workdir: ''")


def test_cli_misspelt_config_field_is_one_line(tmp_path, mnist_dir):
  result = run_cli(tmp_path, mnist_dir, tmp_path / "run", "--config.learnig_rate=1",
                   timeout=120)
  assert_one_line_error(result, "learnig_rate", "learning_rate")
  assert not (tmp_path / "run").exists()


def test_no_restorable_checkpoint_logs_starting_from_step_zero(tmp_path, mnist_dir,
                                                               caplog):
  """A run that starts over removes an earlier run's outputs (here: left by a run of the same
  config whose checkpoints are all gone)."""
  workdir = tmp_path / "run"
  config = tiny_cnn(mnist_dir, num_train_steps=1)
  workdir.mkdir()
  (workdir / "config.json").write_text(
      json.dumps(run_files.config_as_dict(config)))  # a run of this config, checkpoints gone
  (workdir / "figures").mkdir()
  (workdir / "figures" / "old_stack.png").write_bytes(b"png")
  (workdir / "stacks.npz").write_bytes(b"old")
  (workdir / "results.json").write_text('{"model": "old"}')
  with caplog.at_level("INFO"):
    train_and_evaluate(config, str(workdir))
  assert "starting from step 0" in caplog.text
  assert not (workdir / "stacks.npz").exists() and not (workdir / "figures").exists()
  assert json.loads((workdir / "results.json").read_text())["model"] == "cnn"


def _can_mount_tmpfs():
  if not shutil.which("unshare"):
    return False
  probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                          "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
  return probe.returncode == 0


@pytest.mark.slow
def test_cli_full_disk_is_one_line(tmp_path, mnist_dir):
  """A real full disk: the workdir on a small tmpfs in a private mount namespace."""
  if not _can_mount_tmpfs():
    pytest.skip("needs `unshare --user --map-root-user --mount` to mount a small tmpfs")
  mount = tmp_path / "small_disk"
  mount.mkdir()
  config_file = _config_file(tmp_path, mnist_dir, **cnn_overrides(num_epochs=2))
  script = (f"mount -t tmpfs -o size=160k tmpfs {mount} && exec {sys.executable} -m "
            f"ds_symmetry.main --config={config_file} --workdir={mount}/run")
  result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                           script], env=_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=600)
  assert_one_line_error(result, os.strerror(errno.ENOSPC))


# --------------------------------------------------------------------------------------------
# 9. jax.distributed.initialize runs before anything asks JAX for devices.
# --------------------------------------------------------------------------------------------
def free_port():
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def test_main_initializes_distributed_before_touching_the_backend(tmp_path):
  """``main`` with a one-process coordinator: initialize must not find the backend started."""
  config_file = tmp_path / "config.py"
  config_file.write_text(textwrap.dedent(f"""
      from ds_symmetry.train import base_config
      def get_config():
        config = base_config()
        config.distributed.coordinator_address = "127.0.0.1:{free_port()}"
        config.distributed.num_processes = 1
        config.distributed.process_id = 0
        return config
      """))
  launcher = textwrap.dedent(f"""
      import sys, jax
      from absl import app
      from ds_symmetry import main, report
      def fake_train(config, workdir, adopt_workdir=False):
        print("initialized:", jax.distributed.is_initialized(), jax.process_count())
      main.train_and_evaluate = fake_train
      report.format_report = lambda workdir: "report"
      sys.argv = ["main", "--config={config_file}", "--workdir={tmp_path / 'run'}"]
      app.run(main.main)
      """)
  result = subprocess.run([sys.executable, "-c", launcher], env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "initialized: True 1" in result.stdout


# --------------------------------------------------------------------------------------------
# 7. results.json is written atomically (no temporary file left behind).
# --------------------------------------------------------------------------------------------
def test_results_written_atomically(tmp_path, mnist_dir, monkeypatch):
  from ds_symmetry.train import trainer  # pylint: disable=import-outside-toplevel
  replaced = []
  original = os.replace

  def spy(source, target):
    replaced.append(os.path.basename(str(target)))
    return original(source, target)

  monkeypatch.setattr(trainer.os, "replace", spy)
  workdir = tmp_path / "run"
  train_and_evaluate(tiny_cnn(mnist_dir, num_train_steps=1), str(workdir))
  assert "results.json" in replaced and "config.json" in replaced
  assert not [name for name in os.listdir(workdir) if name.endswith(".tmp")]


# --------------------------------------------------------------------------------------------
# 10. Runs that cannot hurt each other or the user (issue 25).
# --------------------------------------------------------------------------------------------
def _thesis_folder(path):
  (path / "figures").mkdir(parents=True)
  (path / "figures" / "thesis_plot.png").write_bytes(b"\x89PNG thesis")
  (path / "results.json").write_text('{"mine": true}')
  (path / "notes.txt").write_text("notes")
  return snapshot(path)


def test_a_directory_that_is_not_a_run_is_refused_untouched(tmp_path, mnist_dir):
  """It used to be trained in: figures/ deleted recursively, results.json replaced."""
  folder = tmp_path / "thesis"
  before = _thesis_folder(folder)
  with pytest.raises(run_files.NotARunError, match=r"not a run of this library \(no config\.json"):
    train_and_evaluate(tiny_cnn(mnist_dir), str(folder))
  assert snapshot(folder) == before and sorted(os.listdir(folder)) == [
      "figures", "notes.txt", "results.json"]


def test_cli_a_directory_that_is_not_a_run_is_one_line_exit_2(tmp_path):
  folder = tmp_path / "thesis"
  before = _thesis_folder(folder)
  result = run_cli(tmp_path, tmp_path / "no_data_here", folder, timeout=120)
  assert result.returncode == 2
  assert_one_line_error(result, "not a run of this library", "--adopt_workdir",
                        "figures/, notes.txt, results.json")
  assert snapshot(folder) == before


def test_cli_config_json_of_the_wrong_type_is_one_line(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text("[4, 8]")
  result = run_cli(tmp_path, tmp_path / "no_data_here", workdir, timeout=120)
  assert_one_line_error(result, "config.json is not this library's config",
                        "found a JSON list")
  assert os.listdir(workdir) == ["config.json"]


@pytest.mark.parametrize("flags, needles", [
    (("--config.batch_size=abc",), ("--config.batch_size: 'abc' is not accepted; expected an "
                                    "int",)),
    (("--config=configs/rotated_mnist.py:bogus",), ("--config:", "'bogus' is not accepted",
                                                    "gcnn")),
    (("--config=configs/no_such_file.py",), ("--config: 'configs/no_such_file.py' is not "
                                             "accepted; expected an existing config file",)),
    (("--workdir=",), ("workdir: '' is not accepted",)),
])
def test_cli_bad_arguments_are_one_line_exit_2(tmp_path, flags, needles):
  """These were tracebacks of 44 to 87 lines, exit status 1."""
  result = run_cli(tmp_path, tmp_path / "no_data_here", tmp_path / "run", *flags, timeout=120)
  if "workdir" not in flags[0]:
    assert result.returncode == 2, result.stderr[-2000:]
  assert_one_line_error(result, *needles)
  assert not (tmp_path / "run").exists()


def test_cli_missing_workdir_is_one_line_exit_2(tmp_path):
  config_file = _config_file(tmp_path, tmp_path / "no_data_here", **cnn_overrides())
  result = subprocess.run([sys.executable, "-m", "ds_symmetry.main", f"--config={config_file}"],
                          env=_env(), cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert_one_line_error(result, "--workdir is required")


def _hold_lock_in_another_process(lock_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import time; from ds_symmetry.workdir_lock import WorkdirLock; "
       f"WorkdirLock({str(lock_path)!r}).acquire(); print('held', flush=True); time.sleep(120)"],
      stdout=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
  assert holder.stdout.readline().strip() == "held"
  return holder


def test_a_second_writer_is_refused_before_it_reads_or_writes(tmp_path, mnist_dir, caplog):
  workdir = tmp_path / "run"
  train_and_evaluate(tiny_cnn(mnist_dir), str(workdir))
  holder = _hold_lock_in_another_process(workdir / run_files.LOCK)
  try:
    before = snapshot(workdir)
    # Even a config that differs is refused for the lock first: nothing is compared or read.
    with pytest.raises(workdir_lock.WorkdirLocked, match=rf"in use by another process "
                                                         rf"\([^:]+:{holder.pid} "):
      train_and_evaluate(tiny_cnn(mnist_dir, num_epochs=2), str(workdir))
    assert snapshot(workdir) == before
  finally:
    holder.kill()
    holder.wait()
  with caplog.at_level("WARNING"):  # its holder is gone: taken over with one warning
    summary = train_and_evaluate(tiny_cnn(mnist_dir, num_epochs=2), str(workdir))
  assert summary["resumed_from_step"] == 4 and summary["step"] == 8
  assert "took over the lock" in caplog.text
  assert not (workdir / run_files.LOCK).exists()


def test_a_damaged_metrics_line_loses_no_intact_record_on_resume(tmp_path, mnist_dir):
  workdir = tmp_path / "run"
  train_and_evaluate(tiny_cnn(mnist_dir), str(workdir))
  path = workdir / "metrics.jsonl"
  lines = path.read_text().splitlines(keepends=True)
  intact = [json.loads(line) for line in lines]
  lines[1] = lines[1][:10] + "\x00garbage\n"
  path.write_text("".join(lines))
  train_and_evaluate(tiny_cnn(mnist_dir, num_epochs=2), str(workdir))
  records = read_jsonl(path)
  kept = [r for r in records if r["step"] <= 4]
  assert kept == intact[:1] + intact[2:]  # every intact record before the resume, in order
  assert [r["epoch"] for r in records if r["type"] == "eval"] == [1, 2]
  assert (workdir / run_files.DAMAGED_METRICS).read_text() == lines[1]


def test_a_run_is_not_shortened_below_its_checkpoints(tmp_path, mnist_dir):
  workdir = tmp_path / "run"
  train_and_evaluate(tiny_cnn(mnist_dir), str(workdir))
  before = snapshot(workdir)
  with pytest.raises(ValueError, match=r"config\.num_train_steps: 3 ends the run at step 3, "
                                       r"but .* has done 4 steps"):
    train_and_evaluate(tiny_cnn(mnist_dir, num_train_steps=3), str(workdir))
  assert snapshot(workdir) == before


@pytest.mark.slow
def test_a_cosine_runs_length_is_not_changed_once_steps_are_done(tmp_path, mnist_dir):
  """Raising num_epochs used to restart the learning rate mid-way at about half its peak."""
  workdir = tmp_path / "run"
  train_and_evaluate(tiny_cnn(mnist_dir, schedule="cosine", num_train_steps=2), str(workdir))
  before = snapshot(workdir)
  with pytest.raises(ValueError, match=r"config\.num_train_steps: 4 makes the run 4 steps long, "
                                       r"but its 'cosine' learning-rate schedule was laid out "
                                       r"for 2 steps"):
    train_and_evaluate(tiny_cnn(mnist_dir, schedule="cosine", num_train_steps=4), str(workdir))
  assert snapshot(workdir) == before


@pytest.mark.slow
def test_a_discovery_run_falls_back_across_its_discovery(tmp_path, mnist_dir):
  """discovery.at_step=4 with every checkpoint from it on damaged: the fallback to step 2 (the
  learned model) used to fail with "holds another model's state" on every rerun."""
  overrides = dict(model="wscnn", model_options={"channels": 4}, num_epochs=2,
                   discovery={"at_step": 4, "require_group": False}, keep_checkpoints=10)
  reference = tmp_path / "reference"
  train_and_evaluate(tiny_cnn(mnist_dir, **overrides), str(reference))
  workdir = tmp_path / "run"
  train_and_evaluate(tiny_cnn(mnist_dir, **overrides), str(workdir))
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4", "6", "8"]
  for step in ("4", "6", "8"):
    flip_byte(largest_file(workdir / "checkpoints" / step / "state"))
  summary = train_and_evaluate(tiny_cnn(mnist_dir, **overrides), str(workdir))
  assert summary["resumed_from_step"] == 2 and summary["discovery"]["step"] == 4
  assert sorted(os.listdir(workdir / checkpointing.REJECTED_DIR)) == ["4", "6", "8"]
  _, expected = read_checkpoint(reference / "checkpoints", 8)
  _, found = read_checkpoint(workdir / "checkpoints", 8)
  jax.tree.map(np.testing.assert_array_equal, found, expected)


def test_a_damaged_shape_in_the_checksum_record_falls_back(tmp_path, caplog):
  """One edited shape in the checksum record used to refuse the whole run as another model's."""
  directory = tmp_path / "checkpoints"
  checkpointer = Checkpointer(directory, keep=5)
  for step in (2, 4):
    checkpointer.save(step, _tiny_state(step))
  checkpointer.close()
  checksum_file = largest_file(directory / "4" / "checksum")
  record = json.loads(open(checksum_file, encoding="utf-8").read())
  record["leaves"]["['params']['w']"][0] = [64, 65]
  with open(checksum_file, "w", encoding="utf-8") as file:
    json.dump(record, file)
  checkpointer = Checkpointer(directory, keep=5)
  with caplog.at_level("WARNING"):
    step, state = checkpointer.restore(_abstract(_tiny_state(0)))
  checkpointer.close()
  assert step == 2 and float(state["params"]["w"][0, 0]) == 2.0
  assert "checksum record is damaged" in caplog.text
  # A checkpoint whose arrays have other shapes is still another model's: an error.
  other = tmp_path / "other"
  checkpointer = Checkpointer(other, keep=5)
  checkpointer.save(2, {"params": {"w": jnp.zeros((8, 8))}, "step": jnp.asarray(7, jnp.int32)})
  checkpointer.close()
  with pytest.raises(checkpointing.IncompatibleCheckpointError, match="another model"):
    Checkpointer(other, keep=5).restore(_abstract(_tiny_state(0)))


def test_every_reader_verifies_checkpoints(tmp_path, mnist_dir, caplog):
  """load_model (the reports' and figures' reader) used to return a byte-flipped checkpoint's
  parameters (sum inf) without a word."""
  from ds_symmetry.train import load_model  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "run"
  train_and_evaluate(tiny_cnn(mnist_dir), str(workdir))
  flip_byte(largest_file(workdir / "checkpoints" / "4" / "state"))
  before = snapshot(workdir)
  with pytest.raises(checkpointing.CorruptCheckpointError, match="step 4"):
    load_model(workdir, 4)
  with caplog.at_level("WARNING"):
    model, _, step = load_model(workdir)  # the newest that verifies
  assert step == 2 and "checkpoint at step 4" in caplog.text
  with pytest.raises(checkpointing.CorruptCheckpointError, match="step 4"):
    read_checkpoint(workdir / "checkpoints", 4)
  flip_byte(largest_file(workdir / "checkpoints" / "2" / "state"))
  with pytest.raises(checkpointing.CorruptCheckpointError, match="no checkpoint .* verifies"):
    load_model(workdir)
  assert snapshot(workdir).keys() == before.keys()  # readers move nothing


def _diverged_run(workdir, config):
  run_files.write_config(workdir, config)
  run_files.write_results(workdir, {"status": "diverged", "diverged_at_step": 3,
                                    "divergence": "the loss is nan at step 3",
                                    "last_checkpoint_step": 2, "final_test_accuracy": 0.1,
                                    "config": config})


def test_the_grid_counts_a_diverged_run_as_failed_and_never_as_done(tmp_path, monkeypatch):
  """It printed `grid: 1 trained, 0 skipped, 0 failed`, exit 0, and skipped it as done."""
  import io  # pylint: disable=import-outside-toplevel
  from experiments import grid as grid_lib, tables  # pylint: disable=import-outside-toplevel
  from experiments.paper_tables import GRIDS  # pylint: disable=import-outside-toplevel
  grid = GRIDS["smoke"]
  run = grid_lib.expand(grid, str(tmp_path), seeds=(0,), rows=grid.rows[:1])[0]
  config = grid_lib.resolve_config(run)
  os.makedirs(run.workdir)
  _diverged_run(run.workdir, config)
  status, detail = grid_lib.run_status(run, config)
  assert status == "diverged" and "diverged at step 3" in detail
  out = io.StringIO()
  monkeypatch.setattr(grid_lib, "execute", lambda *a, **k: pytest.fail("retried"))
  assert grid_lib.run_grid([run], out=out) == 1
  assert "0 trained, 0 skipped, 1 failed" in out.getvalue()
  seed = tables.read_seed(run.workdir, 0)
  assert seed.status == "diverged" and seed not in tables.RowResult(run.row, [seed]).done()


def test_the_table_ignores_a_lock_whose_process_died(tmp_path):
  from experiments import tables  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "seed0"
  workdir.mkdir()
  run_files.write_config(workdir, run_files.config_as_dict(tiny_cnn(tmp_path)))
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  for lock in (str(workdir) + ".lock", workdir / run_files.LOCK):
    with open(lock, "w", encoding="utf-8") as file:
      json.dump({"host": socket.gethostname(), "pid": int(dead.stdout)}, file)
    assert tables.read_seed(str(workdir), 0).status == "partial"
  holder = _hold_lock_in_another_process(workdir / "live.lock")
  try:
    os.replace(workdir / "live.lock", workdir / run_files.LOCK)  # the live holder's file
    assert tables.read_seed(str(workdir), 0).status == "running"
  finally:
    holder.kill()
    holder.wait()
