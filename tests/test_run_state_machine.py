"""A stateful property test of the run-safety guarantees (hypothesis's rule-based state machine).

Rules interleave, on one workdir of a tiny run (4-channel cnn, 256 images, 8 steps, a
checkpoint every 2): train for k steps (the length field ``num_train_steps`` changes each time),
interrupt training mid-way (``KeyboardInterrupt`` at a chosen step, leaving the lock file a
SIGKILL would leave), damage a run file (flip a byte in or delete a checkpoint, damage a
metrics line, truncate ``results.json``, delete ``stacks.npz``), change a bookkeeping field,
start a second writer while the lock is held, and start a run of another config. After every
rule: a refused command raised one ``ValueError`` whose message is one line, and left every
file byte for byte as it was; every metrics record present equals the uninterrupted run's
record of the same type and step, with none twice. At the end the run is resumed to its last
step and must equal the uninterrupted run: the same final parameters, bit for bit.

Interrupts are in-process (a ``KeyboardInterrupt``): real SIGKILLs, mid-checkpoint included, are
in ``test_train.py``'s and ``test_run_safety.py``'s command-line tests.

The default setting is sized for under a minute on 2 cores; ``-m slow`` runs a longer one.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import ds_symmetry  # noqa: F401  (fast CPU convolution flag before jax starts)
from ds_symmetry import run_files, workdir_lock
from ds_symmetry.train import train_and_evaluate
from ds_symmetry.train import trainer as trainer_lib
from ds_symmetry.train.checkpointing import read_checkpoint
from test_run_safety import cnn_overrides, flip_byte, largest_file, snapshot
from test_train import tiny_config

TOTAL_STEPS = 8  # 2 epochs of 4 steps


def _config(data_dir, **extra):
  return tiny_config(data_dir, **cnn_overrides(num_epochs=2, **extra))


def _key(record):
  return record["type"], record["step"]


def _comparable(record):
  return {k: v for k, v in record.items() if k not in ("wall_s",)}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  """Every command compiles the same steps again: a persistent cache makes that a lookup (the
  same executable, so the same numbers). Reset after this module."""
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  previous = {name: getattr(jax.config, name) for name in names}
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  yield
  for name, value in previous.items():
    jax.config.update(name, value)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mnist_dir, compilation_cache):  # pylint: disable=unused-argument
  """The uninterrupted run: its records by (type, step) and its final checkpoint."""
  workdir = tmp_path_factory.mktemp("reference") / "run"
  train_and_evaluate(_config(mnist_dir), str(workdir))
  records = {_key(r): _comparable(r) for r in run_files.read_metrics(workdir)}
  _, state = read_checkpoint(workdir / "checkpoints", TOTAL_STEPS)
  return records, state


@pytest.fixture(scope="module")
def dead_pid():
  process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
  return int(process.stdout)


class _Interrupt:
  """Raises ``KeyboardInterrupt`` after the trainer's ``after``-th step of this invocation."""

  def __init__(self, after):
    self.after, self.count = after, 0
    self.original = trainer_lib._Run._train_step  # pylint: disable=protected-access

  def __enter__(self):
    interrupt = self

    def step(run, *args, **kwargs):
      interrupt.original(run, *args, **kwargs)
      interrupt.count += 1
      if interrupt.count >= interrupt.after:
        raise KeyboardInterrupt

    trainer_lib._Run._train_step = step  # pylint: disable=protected-access
    return self

  def __exit__(self, *exc_info):
    trainer_lib._Run._train_step = self.original  # pylint: disable=protected-access


def make_machine(data_dir, root, reference_records, reference_state, dead_pid):

  class RunMachine(RuleBasedStateMachine):
    """One workdir, commands applied to it, the guarantees checked after each."""

    def __init__(self):
      super().__init__()
      self.workdir = root / f"run{len(os.listdir(root))}"
      self.done = 0  # steps covered by the newest checkpoint, as far as the model knows
      self.extra = {}

    # -- commands ------------------------------------------------------------------------
    def _intact_keys(self):
      return {_key(r) for r in run_files.read_metrics(self.workdir)} & set(reference_records)

    def _train(self, **overrides):
      """Trains; afterwards every record of the uninterrupted run that was intact before and
      lies within the steps now done is still there (kept, or redone)."""
      before = self._intact_keys()
      summary = train_and_evaluate(_config(data_dir, **self.extra, **overrides),
                                   str(self.workdir))
      lost = {key for key in before - self._intact_keys() if key[1] <= summary["step"]}
      assert not lost, f"intact records lost: {sorted(lost)}"
      return summary

    def _files(self):
      """Every file's bytes but the lock's (a refused command may clear a dead holder's)."""
      if not self.workdir.exists():
        return None
      return {k: v for k, v in snapshot(self.workdir).items() if k != run_files.LOCK}

    def _refused(self, call, match):
      """``call`` must raise one one-line ValueError and change no file."""
      before = self._files()
      with pytest.raises(ValueError, match=match) as info:
        call()
      assert "\n" not in str(info.value)
      assert self._files() == before

    @rule(k=st.integers(1, 5), keep=st.sampled_from([2, 3]))
    def train_for(self, k, keep):
      self.extra = {"keep_checkpoints": keep}  # a bookkeeping field, changed on resume
      target = min(self.done + k, TOTAL_STEPS)
      if self.done and target < max(run_files.checkpoint_steps(self.workdir), default=0):
        target = TOTAL_STEPS
      summary = self._train(num_train_steps=target)
      assert summary["step"] == target and summary["status"] == "finished"
      self.done = target

    @rule(after=st.integers(1, 6))
    def interrupt(self, after):
      try:
        with _Interrupt(after):
          self._train()  # a run already at its end has no step to interrupt
      except KeyboardInterrupt:
        pass
      # What a SIGKILL leaves besides: the lock file of a process that no longer runs.
      with open(self.workdir / run_files.LOCK, "w", encoding="utf-8") as file:
        json.dump({"host": socket.gethostname(), "pid": dead_pid}, file)
      self.done = max(run_files.checkpoint_steps(self.workdir), default=0)

    @precondition(lambda self: run_files.checkpoint_steps(self.workdir))
    @rule(data=st.data(), how=st.sampled_from(["flip", "delete"]))
    def damage_checkpoint(self, data, how):
      steps = run_files.checkpoint_steps(self.workdir)
      step = data.draw(st.sampled_from(steps))
      directory = self.workdir / "checkpoints" / str(step)
      if how == "flip":
        flip_byte(largest_file(directory / "state"))
      else:
        shutil.rmtree(directory)

    @precondition(lambda self: (self.workdir / run_files.METRICS).exists())
    @rule(data=st.data())
    def damage_metrics_line(self, data):
      path = self.workdir / run_files.METRICS
      lines = path.read_text().splitlines(keepends=True)
      if lines:
        index = data.draw(st.integers(0, len(lines) - 1))
        lines[index] = lines[index][: len(lines[index]) // 2] + "\x00\n"
        path.write_text("".join(lines))

    @precondition(lambda self: self.workdir.exists())
    @rule(name=st.sampled_from([run_files.RESULTS, run_files.STACKS]))
    def damage_output(self, name):
      path = self.workdir / name
      if name == run_files.RESULTS and path.exists():
        path.write_bytes(path.read_bytes()[:7])
      elif path.exists():
        path.unlink()

    @precondition(lambda self: self.workdir.exists())
    @rule()
    def second_writer(self):
      with workdir_lock.WorkdirLock(self.workdir / run_files.LOCK):
        self._refused(self._train, "in use by another process")

    @precondition(lambda self: (self.workdir / run_files.CONFIG).exists())
    @rule()
    def another_config(self):
      self._refused(lambda: self._train(model_options={"channels": 8}), "different config")

    # -- checks --------------------------------------------------------------------------
    def _check_records(self):
      records = run_files.read_metrics(self.workdir)
      keys = [_key(r) for r in records]
      assert len(keys) == len(set(keys)), keys
      for record in records:
        expected = reference_records.get(_key(record))
        if expected is not None:  # an eval at the end of a shorter invocation has none
          assert _comparable(record) == expected, _key(record)

    @invariant()
    def records_match_the_uninterrupted_run(self):
      if self.workdir.exists():
        self._check_records()

    def teardown(self):
      if not self.workdir.exists():
        return
      summary = self._train()
      assert summary["step"] == TOTAL_STEPS and summary["status"] == "finished"
      self._check_records()
      assert _key({"type": "eval", "step": TOTAL_STEPS}) in {
          _key(r) for r in run_files.read_metrics(self.workdir)}
      _, state = read_checkpoint(self.workdir / "checkpoints", TOTAL_STEPS)
      jax.tree.map(np.testing.assert_array_equal, state, reference_state)
      assert not (self.workdir / run_files.LOCK).exists()

  return RunMachine


def _run(reference, dead_pid, mnist_dir, tmp_path, examples, steps):
  records, state = reference
  machine = make_machine(mnist_dir, tmp_path, records, state, dead_pid)
  machine.TestCase.settings = settings(
      max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=True,
      suppress_health_check=list(HealthCheck), print_blob=True)
  machine.TestCase().runTest()


def test_runs_survive_interleaved_commands(reference, dead_pid, mnist_dir, tmp_path):
  _run(reference, dead_pid, mnist_dir, tmp_path, examples=4, steps=5)


@pytest.mark.slow
def test_runs_survive_interleaved_commands_longer(reference, dead_pid, mnist_dir, tmp_path):
  _run(reference, dead_pid, mnist_dir, tmp_path, examples=15, steps=10)
