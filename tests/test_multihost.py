"""Multi-host training for real: two processes on localhost, JAX's CPU collectives (gloo).

Each process is started as a user would (``python -m ds_symmetry.main`` with
``--config.distributed.*``), owns one CPU device and so half of each batch; their losses must
equal a one-process run's. Bounded in time; both processes are killed on failure.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from test_run_safety import cnn_overrides, free_port
from test_train import REPO, _config_file, _env, _records

TIMEOUT_S = 480


def _launch(config_file, workdir, log_path, extra=()):
  env = _env(JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)  # one CPU device per process
  with open(log_path, "w") as log:
    return subprocess.Popen(
        [sys.executable, "-m", "ds_symmetry.main", f"--config={config_file}",
         f"--workdir={workdir}", *extra], env=env, cwd=REPO, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)


def _wait_all(processes, deadline):
  try:
    for process in processes:
      process.wait(timeout=max(1, deadline - time.time()))
  finally:
    for process in processes:
      if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path, mnist_dir):
  overrides = cnn_overrides(num_train_steps=4, eval_batch_size=50, keep_checkpoints=2)
  config_file = _config_file(tmp_path, mnist_dir, **overrides)
  deadline = time.time() + TIMEOUT_S

  single = tmp_path / "single"
  process = _launch(config_file, single, tmp_path / "single.log")
  _wait_all([process], deadline)
  assert process.returncode == 0, (tmp_path / "single.log").read_text()[-3000:]

  multi = tmp_path / "multi"
  address = f"127.0.0.1:{free_port()}"
  processes = [
      _launch(config_file, multi, tmp_path / f"process{i}.log",
              [f"--config.distributed.coordinator_address={address}",
               "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}"])
      for i in range(2)]
  _wait_all(processes, deadline)
  logs = [(tmp_path / f"process{i}.log").read_text() for i in range(2)]
  for process, log in zip(processes, logs):
    assert process.returncode == 0, log[-4000:]
  assert "JAX process 1/2" in logs[1] and "JAX process 0/2" in logs[0]

  results = json.loads((multi / "results.json").read_text())
  assert results["num_devices"] == 2 and results["status"] == "finished"
  one, two = _records(single), _records(multi)
  losses = {name: [r["loss"] for r in records if r["type"] == "train"]
            for name, records in (("one", one), ("two", two))}
  assert len(losses["one"]) == 4
  np.testing.assert_allclose(losses["two"], losses["one"], rtol=2e-4)
  eval_one = [r for r in one if r["type"] == "eval"][-1]
  eval_two = [r for r in two if r["type"] == "eval"][-1]
  np.testing.assert_allclose(eval_two["test_loss"], eval_one["test_loss"], rtol=2e-4)
  assert eval_two["test_accuracy"] == eval_one["test_accuracy"]
  assert sorted(os.listdir(multi / "checkpoints")) == ["2", "4"]
