"""Trainer tests on real MNIST (a few hundred images, tiny models)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import chex
import numpy as np
import orbax.checkpoint as ocp
import pytest

import ds_symmetry  # noqa: F401  (fast CPU convolution flag before jax starts)
from ds_symmetry import report
from ds_symmetry.run_files import read_jsonl
from ds_symmetry.train import base_config, train_and_evaluate, validate_config
from ds_symmetry.train import steps as steps_lib
from ds_symmetry.train.checkpointing import read_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(data_dir, **overrides):
  config = base_config()
  config.model = "wscnn"
  config.model_options.channels = 4
  config.data_dir = str(data_dir)
  config.limit_train = 384
  config.limit_test = 200
  config.num_epochs = 2
  config.batch_size = 64
  config.eval_batch_size = 100
  config.learning_rate = 3e-3
  config.checkpoint_every_steps = 2
  config.log_every_steps = 1
  config.progress_bar = "off"
  config.save_figures = True
  for key, value in overrides.items():
    if key == "discovery":  # the fields given; the others as base_config's
      config.discovery.update(value)
    else:
      config[key] = value
  config.lock()
  return config


def _config_file(tmp_path, data_dir, **overrides):
  """A config file for subprocess runs: ``tiny_config`` with overrides."""
  path = tmp_path / "tiny_config.py"
  path.write_text(textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
      from test_train import tiny_config
      def get_config(arg=None):
        return tiny_config({str(data_dir)!r}, **{overrides!r})
      """))
  return path


def _env(**extra):
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  env.update(extra)
  return env


def _final_params(workdir):
  return read_checkpoint(os.path.join(workdir, "checkpoints"))


def _records(workdir):
  return [{k: v for k, v in r.items() if k != "wall_s"}
          for r in read_jsonl(os.path.join(workdir, "metrics.jsonl"))]


class _StepsTracedOnce(steps_lib.Steps):
  """The trainer's steps with an augmentation that fails when traced a second time: each trace
  of the train step traces it once, so a recompiled step is an error."""

  def __init__(self, train_state, augment, **kwargs):
    super().__init__(train_state, chex.assert_max_traces(augment, n=1), **kwargs)


@pytest.mark.slow
def test_end_to_end_tiny_run(tmp_path, mnist_dir, capsys, monkeypatch):
  workdir = tmp_path / "run"
  chex.clear_trace_counter()
  monkeypatch.setattr(steps_lib, "Steps", _StepsTracedOnce)
  summary = train_and_evaluate(tiny_config(mnist_dir, num_epochs=3), str(workdir))
  records = read_jsonl(workdir / "metrics.jsonl")
  train = [r for r in records if r["type"] == "train"]
  evals = [r for r in records if r["type"] == "eval"]
  assert [r["step"] for r in train] == list(range(1, 19))
  assert [r["epoch"] for r in evals] == [1, 2, 3]
  assert np.mean([r["loss"] for r in train[-3:]]) < np.mean([r["loss"] for r in train[:3]])
  assert evals[-1]["train_loss"] < evals[0]["train_loss"]
  for key in ("test_accuracy", "test_loss", "train_accuracy", "norm", "entropy",
              "marginal_error", "layers"):
    assert key in evals[-1]
  assert "distance_C4" in evals[-1]["layers"]["convs/0"]
  # No recompilation: the train step compiled once for all 18 steps (_StepsTracedOnce).
  assert summary["parameters"]["representation"] > 0
  assert os.listdir(workdir / "checkpoints")
  assert (workdir / "stacks.npz").exists() and (workdir / "config.json").exists()
  assert any(p.endswith("kernel_orbit.png") for p in summary["figures"])
  assert all((workdir / p).exists() for p in summary["figures"])
  results = json.loads((workdir / "results.json").read_text())
  assert results["final_test_accuracy"] == evals[-1]["test_accuracy"]
  assert results["config"]["model"] == "wscnn"
  assert any(name.startswith("events") for name in os.listdir(workdir / "tensorboard"))
  capsys.readouterr()
  assert report.main([str(workdir)]) == 0
  out = capsys.readouterr().out
  assert "convs/0" in out and "Cayley" in out

  # Rerunning a finished workdir resumes at the end: nothing retrained, nothing duplicated.
  again = train_and_evaluate(tiny_config(mnist_dir, num_epochs=3), str(workdir))
  assert again["resumed_from_step"] == 18
  assert _records(workdir) == [{k: v for k, v in r.items() if k != "wall_s"} for r in records]
  # A different config in the same workdir is a clear error.
  with pytest.raises(ValueError, match="different config"):
    train_and_evaluate(tiny_config(mnist_dir, num_epochs=3, learning_rate=1e-2),
                       str(workdir))


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(tmp_path, mnist_dir):
  config_file = _config_file(tmp_path, mnist_dir)
  reference = tmp_path / "reference"
  train_and_evaluate(tiny_config(mnist_dir), str(reference))

  # A subprocess that sleeps after each checkpoint, killed once a mid-epoch checkpoint exists.
  killed = tmp_path / "killed"
  launcher = textwrap.dedent(f"""
      import time, sys
      import ds_symmetry
      from ds_symmetry.train import checkpointing
      save = checkpointing.Checkpointer.save
      def slow_save(self, step, state):
        save(self, step, state)
        time.sleep(0.5)
      checkpointing.Checkpointer.save = slow_save
      from absl import app
      from ds_symmetry import main
      sys.argv = ["main", "--config={config_file}", "--workdir={killed}"]
      app.run(main.main)
      """)
  process = subprocess.Popen([sys.executable, "-c", launcher], env=_env(), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  target = killed / "checkpoints" / "8"  # 6 steps per epoch: step 8 is mid-epoch 2
  while not target.exists():
    assert process.poll() is None, "the run ended before it could be killed"
    assert time.time() < deadline, "no mid-epoch checkpoint appeared"
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (killed / "results.json").exists()

  resumed = train_and_evaluate(tiny_config(mnist_dir), str(killed))
  assert resumed["resumed_from_step"] >= 8
  step_a, state_a = _final_params(reference)
  step_b, state_b = _final_params(killed)
  assert step_a == step_b == 12
  leaves_a, leaves_b = (ocp.tree.to_flat_dict(s) for s in (state_a, state_b))
  assert leaves_a.keys() == leaves_b.keys()
  for key in leaves_a:
    np.testing.assert_array_equal(np.asarray(leaves_a[key]), np.asarray(leaves_b[key]),
                                  err_msg=str(key))
  assert _records(reference) == _records(killed)


@pytest.mark.slow
def test_corrupt_latest_checkpoint_is_skipped(tmp_path, mnist_dir, caplog):
  workdir = tmp_path / "run"
  config = tiny_config(mnist_dir, num_epochs=1, model="cnn", save_figures=False,
                       track_symmetry=False)
  config.unlock()
  config.model_options = {"channels": 4}
  config.lock()
  train_and_evaluate(config, str(workdir))
  reference = _records(workdir)
  latest = workdir / "checkpoints" / "6"
  for root, _, files in os.walk(latest):
    for name in files:
      if name != "_CHECKPOINT_METADATA":
        with open(os.path.join(root, name), "wb") as file:
          file.write(b"garbage")
  summary = train_and_evaluate(config, str(workdir))
  assert summary["resumed_from_step"] == 4
  assert _records(workdir) == reference


def _run_main(tmp_path, data_dir, workdir, devices, **overrides):
  config_file = _config_file(tmp_path, data_dir, **overrides)
  flags = os.environ.get("XLA_FLAGS", "")
  env = _env(XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count={devices}".strip())
  result = subprocess.run(
      [sys.executable, "-m", "ds_symmetry.main", f"--config={config_file}",
       f"--workdir={workdir}"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.mark.slow
def test_eight_devices_match_one_device(tmp_path, mnist_dir):
  overrides = dict(num_train_steps=4, save_figures=False, track_symmetry=False,
                   eval_batch_size=40)
  out = {}
  for devices in (1, 8):
    workdir = tmp_path / f"devices{devices}"
    result = _run_main(tmp_path, mnist_dir, workdir, devices, **overrides)
    out[devices] = _records(workdir)
    assert json.loads((workdir / "results.json").read_text())["num_devices"] == devices, \
        result.stderr[-2000:]
  losses = {d: [r["loss"] for r in out[d] if r["type"] == "train"] for d in out}
  assert len(losses[1]) == 4
  np.testing.assert_allclose(losses[8], losses[1], rtol=2e-4)
  eval1 = [r for r in out[1] if r["type"] == "eval"][-1]
  eval8 = [r for r in out[8] if r["type"] == "eval"][-1]
  np.testing.assert_allclose(eval8["test_loss"], eval1["test_loss"], rtol=2e-4)


def test_clear_errors_and_nothing_written(tmp_path, mnist_dir):
  config = base_config()
  with pytest.raises(ValueError, match="unknown key"):
    config.learnig_rate = 1e-3
    validate_config(config)
  locked = tiny_config(mnist_dir)
  with pytest.raises(AttributeError):
    locked.learnig_rate = 1e-3
  with pytest.raises(ValueError, match=r"not divisible by the number of devices \(8\)"):
    validate_config(tiny_config(mnist_dir, batch_size=60), num_devices=8)
  with pytest.raises(ValueError, match="one of"):
    validate_config(tiny_config(mnist_dir, model="wscn"))
  with pytest.raises(ValueError, match="rotated_mnist"):
    validate_config(tiny_config(mnist_dir, protocol="rotmnist"))
  with pytest.raises(ValueError,
                     match=r"config.discovery.when_within: -0.1 .* a float >= 0"):
    validate_config(tiny_config(mnist_dir, discovery={"when_within": -0.1}))
  exact = tiny_config(mnist_dir, model="gcnn", discovery={"when_within": 0.3})
  exact.unlock()
  exact.model_options = {"channels": 4}
  with pytest.raises(ValueError, match=r"config.discovery.at_step / when_within: set for "
                                       r"model 'gcnn', which has nothing to discover"):
    train_and_evaluate(exact, str(tmp_path / "gcnn_run"))
  assert not (tmp_path / "gcnn_run").exists()

  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(ValueError, match="workdir"):
    train_and_evaluate(tiny_config(mnist_dir), str(blocker / "run"))

  workdir = tmp_path / "missing_data_run"
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(Exception, match="(?i)cifar"):
    train_and_evaluate(tiny_config(empty, model="resnet", protocol="cifar10"), str(workdir))
  assert not workdir.exists()

  workdir = tmp_path / "bad_option_run"
  with pytest.raises(ValueError, match="unknown option"):
    config = tiny_config(mnist_dir)
    config.unlock()
    config.model_options.widht = 3
    train_and_evaluate(config, str(workdir))
  assert not workdir.exists()
