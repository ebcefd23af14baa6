"""``train_and_evaluate(config, workdir)``: the training loop.

A run writes its workdir's files through ``ds_symmetry.run_files`` (names and formats there)::

  config.json          the resolved config (a run of a different one in this workdir is an
                       error, checked before anything is read or written)
  metrics.jsonl        ``{"type": "train", ...}`` every ``log_every_steps``, ``{"type": "eval",
                       ...}`` per evaluation (``evals_per_epoch`` per evaluated epoch)
  tensorboard/         the same numbers as TensorBoard events
  checkpoints/<step>/  Orbax checkpoints of the train state with a checksum (the last
                       ``keep_checkpoints``; see ``checkpointing``); rejected ones go to
                       rejected_checkpoints/
  stacks.npz           every weight-sharing layer's stack at the latest evaluation
  discovered_stacks.npz  the frozen stacks, once a run is rounded (``discovery.at_step`` or
                       ``discovery.when_within``); one that does not read is set aside as
                       discovered_stacks.damaged.npz on resume, with the discovered model's
                       checkpoints, and the run redoes the discovery from the checkpoint before it
  figures/*.png        learned stacks and lifting-kernel orbits (at the end)
  results.json         final summary: status ("finished" or "diverged"), accuracies,
                       parameter counts, timing, config

A run is set up (:class:`_Run`'s constructor: checks, data, model, restore), trains epoch by
epoch (:meth:`_Run.train`; evaluations, checkpoints and the discovery fall inside epochs where
configured) and finishes (:meth:`_Run.finish`: ``results.json``, figures).

Divergence: a non-finite loss (checked every step, one step late so the host does not wait)
or non-finite parameters at a checkpoint stop the run; nothing non-finite is checkpointed, and
:class:`TrainingDivergedError` is raised after ``results.json`` is written.

Determinism: the data order of epoch ``e`` is a permutation drawn from ``(seed, e)``; the key
of step ``s`` is ``fold_in(key(seed), s)``. Checkpoints hold the step and the epoch's running
train metrics, so a killed run resumed from its workdir ends with the same parameters and
metrics as an uninterrupted run (bit for bit on CPU). Every epoch drops its last incomplete
batch (``steps_per_epoch = N // batch_size``; each epoch reshuffles).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from ds_symmetry import provenance
from ds_symmetry import run_files, workdir_lock
from ds_symmetry.data import make_protocol
from ds_symmetry.nn.subgroup_selection import SubgroupSelector
from ds_symmetry.nn.introspection import (count_parameters, parameter_groups,
                                          representation_stacks, weight_sharing_layers)
from ds_symmetry.train import config as config_lib
from ds_symmetry.train import restore, resume_checks
from ds_symmetry.train import steps as steps_lib
from ds_symmetry.train.checkpointing import REJECTED_DIR, Checkpointer, NonFiniteStateError
from ds_symmetry.train.metrics import MetricWriter


# --------------------------------------------------------------------------------------------
# Setup helpers
# --------------------------------------------------------------------------------------------
class _QuietOrbax:
  """Drops Orbax's per-save INFO chatter (it logs through absl like we do); keeps warnings.

  Errors that Orbax's worker threads (and asyncio, for their tasks) log with full tracebacks,
  e.g. one per array on a full disk, are shown only at debug verbosity: the same error reaches
  the main thread, which reports it once."""

  def filter(self, record) -> bool:  # pylint: disable=missing-function-docstring
    from_orbax = "orbax" in record.pathname
    if record.levelno >= 40 and (from_orbax or record.name == "asyncio"):
      return logging.level_debug()
    return record.levelno >= 30 or not from_orbax


def _quiet_orbax_logs() -> None:
  import logging as std_logging  # pylint: disable=import-outside-toplevel
  for logger in (std_logging.getLogger("absl"), std_logging.getLogger()):
    if not any(isinstance(f, _QuietOrbax) for f in logger.filters):
      logger.addFilter(_QuietOrbax())
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _QuietOrbax) for f in handler.filters):
    handler.addFilter(_QuietOrbax())


def _check_writable(workdir: str) -> None:
  """Raises ``ValueError`` unless ``workdir`` exists as a writable directory or can be made."""
  if not isinstance(workdir, (str, os.PathLike)) or not os.fspath(workdir).strip():
    raise ValueError(f"workdir: {workdir!r} is not accepted; expected the path of a directory "
                     f"(e.g. --workdir=runs/default)")
  path = os.path.abspath(workdir)
  if os.path.exists(path):
    if not os.path.isdir(path):
      raise ValueError(f"workdir: {workdir!r} exists and is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
      raise ValueError(f"workdir: {workdir!r} is not writable")
    return
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
    raise ValueError(f"workdir: {workdir!r} cannot be created ({parent!r} is not a writable "
                     f"directory)")


def initialize_distributed(config) -> None:
  """Calls ``jax.distributed.initialize`` from ``config.distributed`` (once; a no-op without a
  coordinator address). Must run before anything asks JAX for devices or processes, so
  ``ds_symmetry.main`` calls it first. On CPU, JAX's default cross-process collectives (gloo)
  are used."""
  dist = config.distributed
  if dist.coordinator_address and not jax.distributed.is_initialized():
    jax.distributed.initialize(coordinator_address=dist.coordinator_address,
                               num_processes=dist.num_processes, process_id=dist.process_id)


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D ``data`` mesh over every device (all hosts), with auto (plain-input) axis type."""
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def _global_array(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """Host numpy (identical on every host) -> global array with ``sharding``."""
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The training order of ``epoch``: a permutation drawn from ``(seed, epoch)``."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int32)


def _check_same_config(workdir: str, config) -> None:
  """Raises ``ValueError`` if ``workdir/config.json`` holds a config that differs from
  ``config`` in a field that changes the math (anything outside
  ``config.RESUMABLE_CHANGES``; without checkpoints, only in a field ``config.json`` records).
  Runs before anything is restored or written."""
  try:
    saved = run_files.read_config(workdir)
  except run_files.UnreadableRunFile as error:
    raise ValueError(f"workdir {workdir!r}: {error}; use a new workdir or remove the run") \
        from error
  if saved is None:
    return
  harmless, breaking = config_lib.workdir_config_differences(
      workdir, saved, run_files.config_as_dict(config))
  if breaking:
    raise ValueError(
        f"workdir {workdir!r} holds a run with a different config (fields {breaking} differ "
        f"from {run_files.path(workdir, run_files.CONFIG)}); use a new workdir, or restore "
        f"those values to resume")
  if harmless:
    logging.warning("resuming with changed config fields %s (allowed: they do not change "
                    "the steps already done)", harmless)


def _abstract_min_input_size(config) -> int | None:
  """:func:`_min_input_size` of ``config``'s model, built abstractly (no weights drawn); None
  if it cannot be built so (the real build then reports the problem)."""
  try:
    model = nnx.eval_shape(lambda: restore.build_model(config, restore.NUM_CLASSES))
  except Exception:  # pylint: disable=broad-except
    logging.debug("the model could not be built abstractly", exc_info=True)
    return None
  return _min_input_size(model)


def _cause(error: BaseException) -> str:
  """``Type: first line`` of what made a run file unreadable."""
  cause = error.__cause__ or error
  while isinstance(cause, run_files.UnreadableRunFile) and cause.__cause__ is not None:
    cause = cause.__cause__
  lines = str(cause).strip().splitlines()
  return f"unreadable: {type(cause).__name__}: {lines[0][:120] if lines else ''}"


def _min_input_size(model) -> int | None:
  """The smallest image size ``model`` (or the network inside it) takes; None if unknown."""
  for _, module in nnx.iter_modules(model):
    if isinstance(getattr(module, "min_input_size", None), int):
      return module.min_input_size
  return None


class TrainingDivergedError(RuntimeError):
  """The loss or the parameters became NaN or infinite; raised after results are written."""


def _require_finite(value: float, step: int, what: str = "loss") -> None:
  if not math.isfinite(value):
    raise _Diverged(step, f"the {what} is {value} at step {step}")


class _Diverged(Exception):
  def __init__(self, step: int, reason: str):
    super().__init__(reason)
    self.step, self.reason = step, reason


class _Progress:
  """tqdm on a TTY, absl log lines otherwise."""

  def __init__(self, mode: str, total: int, initial: int, every: int):
    use_bar = mode == "on" or (mode == "auto" and sys.stderr.isatty())
    self.bar = None
    self.total, self.every = total, every
    self.start_time, self.start_step = time.time(), initial
    if use_bar:
      from tqdm import tqdm  # pylint: disable=import-outside-toplevel
      self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

  def update(self, step: int, text: str | None = None) -> None:
    if self.bar is not None:
      self.bar.update(1)
      if text:
        self.bar.set_postfix_str(text, refresh=False)
    elif text is not None:
      elapsed = time.time() - self.start_time
      rate = (step - self.start_step) / max(elapsed, 1e-9)
      eta = (self.total - step) / max(rate, 1e-9)
      logging.info("step %d/%d  %s  (%.2f steps/s, ETA %s)", step, self.total, text, rate,
                   time.strftime("%H:%M:%S", time.gmtime(eta)))

  def write(self, text: str) -> None:
    if self.bar is not None:
      self.bar.write(text)
    logging.info("%s", text)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()


def _stack_metadata(model) -> dict[str, dict[str, Any]]:
  return {path: {"kind": info.kind, "kernel_size": info.kernel_size, "learned": info.learned,
                 "num_elements": info.num_elements, "group": info.group or ""}
          for path, info in representation_stacks(model).items()}


def _symmetry_summaries(stacks: dict[str, np.ndarray], metadata: dict) -> dict[str, dict]:
  from ds_symmetry.analysis import summarize_stack  # pylint: disable=import-outside-toplevel
  return {name: summarize_stack(np.asarray(stack), metadata[name]["kernel_size"],
                                metadata[name]["kind"])
          for name, stack in stacks.items() if metadata[name]["learned"]}


def _layer_metrics(summaries: dict[str, dict]) -> dict[str, dict]:
  keep = ("group", "group_distance", "best_candidate", "cayley_max_error",
          "mean_permutation_distance")
  return {name: {k: v for k, v in summary.items()
                 if k in keep or k.startswith("distance_")}
          for name, summary in summaries.items()}


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       adopt_workdir: bool = False) -> dict[str, Any]:
  """Trains ``config.model`` on ``config.protocol``, evaluating each epoch; resumes ``workdir``.

  ``workdir`` must be new, empty or a run of this library (its ``config.json``); any other
  directory is refused untouched unless ``adopt_workdir``. The run holds the workdir's lock
  (``ds_symmetry.workdir_lock``) from before it reads anything until it returns: a second
  writer is refused with ``workdir_lock.WorkdirLocked``.

  With ``config.discovery.then_train``, identify, then train: two runs under ``workdir``
  (``train.two_stage``). Returns the summary also written to ``workdir/results.json``.
  Raises ``ValueError`` for a bad config or workdir (including a workdir holding a run of
  another config, checked before anything is read or written), and
  :class:`TrainingDivergedError` when the loss or the parameters stop being finite (after
  writing ``results.json`` with ``"status": "diverged"``; checkpoints stay at the last finite
  step).
  """
  config_lib.validate_config(config)
  if config.discovery.then_train:  # two runs under workdir: train.two_stage
    from ds_symmetry.train import two_stage  # pylint: disable=import-outside-toplevel
    return two_stage.identify_then_train(config, workdir, adopt_workdir=adopt_workdir)
  _check_writable(workdir)
  claim = workdir_lock.claim_workdir(workdir, adopt=adopt_workdir,
                                     lock=_first_process(config),
                                     coordinator=_coordinator(config))
  try:
    if claim.kind != "adopted":  # an adopted directory has no config.json of a run
      _check_same_config(workdir, config)
    run = _Run(config, workdir)
    try:
      run.train()
    finally:
      run.close()
    return run.finish()
  finally:
    claim.release()


def _first_process(config) -> bool:
  """Whether this is the first (or only) process of the run, without starting JAX's backend."""
  dist = config.distributed
  return not dist.coordinator_address or dist.process_id == 0


def _coordinator(config) -> str | None:
  """The coordinator address of a multi-host run whose process ids are given (the first
  process records it in the workdir lock, the others wait for that lock); None otherwise."""
  dist = config.distributed
  return dist.coordinator_address if dist.coordinator_address and isinstance(
      dist.process_id, int) else None


def learning_rate_scale(discovery: dict[str, Any] | None) -> float:
  """The weights' learning rate after a discovery, as a multiple of ``config.learning_rate``:
  ``1/|H|`` for a selector's backbone expanded into the G-CNN of ``H``
  (``discovery.expand_backbone``), else 1. Its group layers' fan-in is ``|H|`` times the
  backbone's, and Adam moves every weight by about the learning rate whatever its gradient's
  size, so at the backbone's rate each output would move ``|H|`` times as far per step (the
  1/fan-in rule of muP for Adam); on a tuning seed, D4 at the full rate lost what the backbone
  had learned within 5 steps (``docs/study/identification.md``)."""
  if discovery and discovery.get("expanded_backbone"):
    return 1.0 / float(discovery["order"])
  return 1.0


class _Run:
  """One invocation of a run: set up by the constructor, then :meth:`train`, :meth:`close` and
  :meth:`finish`. ``state`` is the train state of ``steps`` (``steps.Steps``) at ``step``."""

  # -- setup ---------------------------------------------------------------------------------
  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.start_time = time.time()
    _quiet_orbax_logs()
    initialize_distributed(config)
    self.num_devices = jax.device_count()
    config_lib.validate_config(config, num_devices=self.num_devices)
    self.config, self.workdir = config, workdir
    self.is_main = jax.process_index() == 0
    self.mesh = make_mesh()
    self.batch_sharding = NamedSharding(self.mesh, P("data"))
    # Data and model come first: a missing dataset or a bad option fails before any file exists.
    self._load_data_and_model()
    resume_checks.check_run_length(config, workdir, self.total_steps, self.steps_per_epoch)
    self._open_workdir()
    self.compile_seconds = None
    self.train_seconds, self.train_steps_timed, self.timer = 0.0, 0, time.time()
    self.last_stacks, self.last_summaries = None, None
    self.diverged, self.last_checkpoint = None, None
    # The loss of the newest step, checked one step late so the host never waits on the
    # device (and always before a checkpoint or an evaluation).
    self.pending_loss = None
    logging.info("model %s: %d free + %d representation parameters; protocol %s: %d train / %d "
                 "test images; %d devices; %d steps (%d epochs of %d steps, batch %d)",
                 config.model, self.parameters["free"], self.parameters["representation"],
                 config.protocol, self.num_train, self.protocol.test_images.shape[0],
                 self.num_devices, self.total_steps, self.num_epochs, self.steps_per_epoch,
                 config.batch_size)

  def _load_data_and_model(self) -> None:
    """The protocol's data on the devices, the step counts, the model and its steps."""
    config, workdir = self.config, self.workdir
    shape = config_lib.protocol_image_shape(config)
    if shape is not None:  # images the model cannot take: refused before the data is read
      config_lib.check_images_fit(config, shape, _abstract_min_input_size(config))
    self.protocol = make_protocol(config.protocol, data_dir=config.data_dir, seed=config.seed,
                                  limit_train=config.limit_train, limit_test=config.limit_test,
                                  **config.protocol_options.to_dict())
    # A run already rounded to its discovered G-CNN resumes with the frozen stacks; a damaged
    # file of them is set aside by _restore (once every check has passed).
    self.damaged_discovery = None
    try:
      discovered = run_files.load_discovered(workdir)
    except run_files.UnreadableRunFile as error:
      discovered, self.damaged_discovery = None, error
    self.discovery = None if discovered is None else discovered[1]
    model = restore.build_model(config, self.protocol.num_classes, discovered)
    # Images the model cannot take fail here at the latest, before the workdir is written.
    config_lib.check_images_fit(config, self.protocol.image_shape, _min_input_size(model))
    self.num_train = self.protocol.train_images.shape[0]
    self.steps_per_epoch = self.num_train // config.batch_size
    if self.steps_per_epoch < 1:
      raise ValueError(f"config.batch_size: {config.batch_size} exceeds the {self.num_train} "
                       f"training examples; use a smaller batch or more data")
    self.total_steps = (config.num_train_steps if config.num_train_steps > 0
                        else config.num_epochs * self.steps_per_epoch)
    self.num_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
    self.parameters = count_parameters(model)
    self._build(model, rate_scale=learning_rate_scale(self.discovery))
    if (config.discovery.when_within and self.discovery is None
        and not isinstance(model, SubgroupSelector)):
      self._lifting_stack_name()  # a model without one fails here, not at the first check
    replicated = NamedSharding(self.mesh, P())
    self.train_images = _global_array(self.protocol.train_images, replicated)
    self.train_labels = _global_array(self.protocol.train_labels.astype(np.int32), replicated)
    chunked = NamedSharding(self.mesh, P(None, "data"))
    self.test_chunks = [_global_array(a, chunked) for a in steps_lib.chunk_test_set(
        self.protocol.test_images, self.protocol.test_labels, config.eval_batch_size)]

  def _open_workdir(self) -> None:
    """Checkpointer, restored state (or a clean start), ``config.json``, metric writer."""
    config, workdir = self.config, self.workdir
    os.makedirs(workdir, exist_ok=True)
    self.checkpointer = Checkpointer(run_files.path(workdir, run_files.CHECKPOINTS),
                                     config.keep_checkpoints)
    try:
      self.restored_step = self._restore()
    except BaseException:
      self.checkpointer.close()
      raise
    if self.restored_step is not None:
      logging.info("resuming from the checkpoint at step %d in %s", self.restored_step, workdir)
    else:
      logging.info("no checkpoint restored: starting from step 0 in %s", workdir)
      if self.is_main:
        for removed in run_files.remove_outputs(workdir):
          logging.info("removed %s of an earlier run", removed)
    if self.is_main:
      run_files.write_config(workdir, run_files.config_as_dict(config))
    self.step = int(self.restored_step or 0)
    self.writer = MetricWriter(workdir, self.step, enabled=self.is_main)
    self.progress = _Progress(config.progress_bar, self.total_steps, self.step,
                              config.log_every_steps)

  def _build(self, model, carried: steps_lib.TrainState | None = None,
             rate_scale: float = 1.0) -> None:
    """``steps`` and the initial ``state`` for ``model``. ``carried``: the train state before a
    discovery, whose step count and running metrics go on (its optimizer does not: the logits
    are gone). ``rate_scale``: the weights' learning rate is ``config.learning_rate``
    times it (:func:`learning_rate_scale`)."""
    config = self.config
    if rate_scale != 1.0:
      config = ml_collections.ConfigDict(config.to_dict())
      config.learning_rate = config.learning_rate * rate_scale
    tx = steps_lib.make_optimizer(config, parameter_groups(model), self.total_steps)
    train_state = steps_lib.TrainState(model, tx)
    if carried is not None:
      train_state.optimizer.step.set_value(carried.optimizer.step.get_value())
      nnx.update(train_state.metrics, nnx.state(carried.metrics))
    self.steps = steps_lib.Steps(train_state, self.protocol.augment, seed=config.seed,
                                 weights=steps_lib.regularizer_weights(config), mesh=self.mesh)
    self.state = self.steps.initial_state
    self.metadata = _stack_metadata(model)
    self.is_selector = isinstance(model, SubgroupSelector)

  def _restore(self) -> int | None:
    """Restores the newest good checkpoint into ``state``; its step, or None."""
    if self.damaged_discovery is not None:
      return self._restore_before_damaged_discovery()
    # A rounded run's checkpoints before its discovery hold the learned model: only those from
    # the discovery on are restored with the discovered one, the others below.
    step, arrays = self.checkpointer.restore(
        self.steps.abstract_checkpoint(),
        min_step=None if self.discovery is None else self.discovery["step"])
    if self.discovery is not None and (step is None or step < self.discovery["step"]):
      # The checkpoint written at the discovery is gone: resume the run from before it.
      logging.warning("%s has no checkpoint from step %d on; resuming without it",
                      run_files.path(self.workdir, run_files.DISCOVERED_STACKS),
                      self.discovery["step"])
      self.discovery = None
      self._build(restore.build_model(self.config, self.protocol.num_classes))
      step, arrays = self.checkpointer.restore(self.steps.abstract_checkpoint())
      if self.is_main:
        os.remove(run_files.path(self.workdir, run_files.DISCOVERED_STACKS))
    if step is not None:
      self.state = self.steps.from_checkpoint(arrays)
    return step

  def _restore_before_damaged_discovery(self) -> int | None:
    """``discovered_stacks.npz`` does not read: without its stacks the discovered model cannot
    be rebuilt. The file is set aside, and with it the checkpoints of the discovered model
    (they hold another model than the learned one); the run resumes from the newest verified
    checkpoint of the learned model, from before the discovery, which is then redone. One
    warning line says so."""
    if jax.process_count() > 1:  # every process has read the file before it is moved
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
      multihost_utils.sync_global_devices("ds_symmetry_damaged_discovery")
    aside = run_files.path(self.workdir, run_files.DAMAGED_DISCOVERED)
    if self.is_main:
      aside = run_files.set_aside_discovered(self.workdir)
    step, arrays = self.checkpointer.restore(self.steps.abstract_checkpoint(),
                                             set_aside_other_models=True)
    moved = sorted(self.checkpointer.set_aside_steps)
    checkpoints = (f" with the checkpoints of the discovered model (steps "
                   f"{', '.join(map(str, moved))}, now in {REJECTED_DIR}/)" if moved else "")
    resume = (f"resuming from the checkpoint at step {step}, before the discovery, which is "
              f"redone" if step is not None else
              "no checkpoint from before the discovery is kept: starting over from step 0")
    logging.warning("%s (%s): set aside as %s%s; %s",
                    run_files.path(self.workdir, run_files.DISCOVERED_STACKS),
                    _cause(self.damaged_discovery), os.path.basename(aside), checkpoints, resume)
    if step is not None:
      self.state = self.steps.from_checkpoint(arrays)
    return step

  # -- training ------------------------------------------------------------------------------
  def train(self) -> None:
    """Trains epoch by epoch up to ``total_steps``; a divergence ends it with a record."""
    try:
      while self.step < self.total_steps and not self._stopped_at_discovery():
        self._train_epoch()
    except _Diverged as error:
      self.diverged = error
      self.last_checkpoint = max(self.checkpointer.steps(), default=None)
      self.writer.write({"type": "diverged", "step": error.step, "reason": error.reason,
                         "last_checkpoint": self.last_checkpoint,
                         "wall_s": time.time() - self.start_time})

  def _train_epoch(self) -> None:
    """The rest of the current epoch, then its evaluation (when due) and checkpoint."""
    config, per_epoch = self.config, self.steps_per_epoch
    epoch = self.step // per_epoch
    order = epoch_order(config.seed, epoch, self.num_train)
    epoch_end = min((epoch + 1) * per_epoch, self.total_steps)
    if self.step % per_epoch == 0:
      self.state = self.steps.reset_metrics(self.state)
    evaluated = (epoch + 1) % config.eval_every_epochs == 0
    mid_epoch_evals = {epoch * per_epoch + (j * per_epoch) // config.evals_per_epoch
                       for j in range(1, config.evals_per_epoch)} if evaluated else set()
    self.timer = time.time()
    while self.step < epoch_end:
      self._train_step(order, epoch)
      if self.step in mid_epoch_evals and self.step < epoch_end:  # the end evaluates anyway
        eval_start = time.time()
        self._evaluate(epoch)
        self._save_checkpoint()
        self.timer += time.time() - eval_start  # keep train_seconds free of evaluations
      if self.discovery is None and self._discovery_due():
        self._discover()
      if self._stopped_at_discovery():
        break
      if self.step % config.checkpoint_every_steps == 0 and self.step < epoch_end:
        self._save_checkpoint()
    self._check_pending()
    jax.block_until_ready(self.state)
    self.train_seconds += time.time() - self.timer
    if evaluated or self.step == self.total_steps:
      self._evaluate(epoch)
    self._save_checkpoint()

  def _stopped_at_discovery(self) -> bool:
    """``discovery.stop_after`` and the model has been rounded."""
    return bool(self.config.discovery.stop_after and self.discovery is not None)

  def _train_step(self, order: np.ndarray, epoch: int) -> None:
    config = self.config
    offset = (self.step % self.steps_per_epoch) * config.batch_size
    indices = _global_array(order[offset:offset + config.batch_size], self.batch_sharding)
    call_start = time.time()
    self.state, metrics = self.steps.train(self.state, self.train_images, self.train_labels,
                                           indices)
    self.step += 1
    self._check_pending()
    self.pending_loss = (self.step, metrics["loss"])
    if self.compile_seconds is None:
      jax.block_until_ready(self.state)
      self.compile_seconds = time.time() - call_start
      self.timer = time.time()
    else:
      self.train_steps_timed += 1
    text = None
    if self.step % config.log_every_steps == 0:
      values = {k: float(v) for k, v in jax.device_get(metrics).items()}
      values["accuracy"] = values.pop("correct") / config.batch_size
      self.writer.write({"type": "train", "step": self.step, "epoch": epoch, **values})
      text = f"epoch {epoch + 1}/{self.num_epochs} loss {values['loss']:.4f}"
      self._check_pending()
    self.progress.update(self.step, text)

  def _check_pending(self) -> None:
    if self.pending_loss is not None:
      loss_step, loss = self.pending_loss
      self.pending_loss = None
      _require_finite(float(loss), loss_step)

  def _save_checkpoint(self) -> None:
    self._check_pending()
    try:
      self.checkpointer.save(self.step, self.steps.checkpoint(self.state))
    except NonFiniteStateError as error:
      raise _Diverged(self.step, f"the parameters are not finite at step {self.step}") \
          from error

  def _stacks(self) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in jax.device_get(self.steps.stacks(self.state)).items()}

  def _evaluate(self, epoch: int) -> None:
    """Test metrics, stacks and their symmetry summaries; writes the eval record and stacks."""
    self._check_pending()
    step = self.step
    results = {k: float(v) for k, v in jax.device_get(
        self.steps.evaluate(self.state, *self.test_chunks)).items()}
    record = {"type": "eval", "step": step, "epoch": epoch + 1,
              "epochs_done": step / self.steps_per_epoch, **results}
    _require_finite(record["test_loss"], step, "test loss")
    self.last_stacks = self._stacks()
    self.last_summaries = None
    if self.config.track_symmetry and self.last_stacks:
      self.last_summaries = _symmetry_summaries(self.last_stacks, self.metadata)
      record["layers"] = _layer_metrics(self.last_summaries)
    record["wall_s"] = time.time() - self.start_time
    self.writer.write(record)
    if self.is_main and self.last_stacks:
      run_files.save_stacks(self.workdir, self.last_stacks, self.metadata, step)
    self.progress.write(
        f"epoch {epoch + 1}/{self.num_epochs} (step {step}): train loss "
        f"{record['train_loss']:.4f} acc {record['train_accuracy']:.4f} | test loss "
        f"{record['test_loss']:.4f} acc {record['test_accuracy']:.4f} | norm "
        f"{record['norm']:.3g} marginal error {record['marginal_error']:.2g}")

  def _test_accuracy(self) -> float:
    results = self.steps.evaluate(self.state, *self.test_chunks)
    return float(jax.device_get(results["test_accuracy"]))

  def _discovery_due(self) -> bool:
    """At ``discovery.at_step``, or (``discovery.when_within``) at a check step where the
    model has committed: a learned lifting stack to a group (``discovery.committed_group``), a
    ``SubgroupSelector`` to one subgroup (``1 − max q ≤ discovery.when_within``)."""
    config = self.config.discovery
    if self.step == config.at_step:
      return True
    if not config.when_within or self.step % config.check_every_steps:
      return False
    if self.is_selector:
      model = self.steps.train_state(self.state).model
      return model.committed_subgroup(config.when_within) is not None
    from ds_symmetry.discovery import committed_group  # pylint: disable=import-outside-toplevel
    name = self._lifting_stack_name()
    stack = np.asarray(jax.device_get(self.steps.stacks(self.state)[name]))
    return committed_group(stack, self.metadata[name]["kernel_size"],
                           config.when_within) is not None

  def _lifting_stack_name(self) -> str:
    """The learned lifting layer's stack name (``discovery.when_within`` watches it)."""
    names = [name for name, info in self.metadata.items()
             if info["learned"] and info["kind"] == "lift"]
    if not names:
      raise ValueError(f"config.discovery.when_within: {self.config.discovery.when_within!r} "
                       f"needs a model with a learned lifting layer; model "
                       f"{self.config.model!r} has none (set it to 0)")
    return names[0]

  def _discover(self) -> None:
    """Rounds the model to its discovered G-CNN (``ds_symmetry.discovery``) and trains that on:
    same weights (or, with ``discovery.reinitialize``, the model's initial ones; a selector's
    answer gets a fresh G-CNN, or with ``discovery.keep_backbone`` its backbone averaged over
    the answer or, with ``discovery.expand_backbone`` too, expanded into its G-CNN), batch
    statistics, step and running metrics; a fresh optimizer (:func:`learning_rate_scale`)."""
    from ds_symmetry.discovery import discover_gcnn  # pylint: disable=import-outside-toplevel
    self._check_pending()
    before = self._test_accuracy()
    learned = {name: stack for name, stack in self._stacks().items()
               if self.metadata[name]["learned"]}
    current = self.steps.train_state(self.state)
    settings = self.config.discovery
    found = discover_gcnn(current.model, require_group=settings.require_group,
                          build=functools.partial(restore.exact_model, self.config,
                                                  self.protocol.num_classes),
                          keep_backbone=settings.keep_backbone,
                          expand_backbone=settings.expand_backbone)
    record = dict(found.record(), step=self.step, test_accuracy_before=before,
                  wall_s=time.time() - self.start_time,
                  trigger=("discovery.at_step" if self.step == settings.at_step
                           else "discovery.when_within"))
    model = found.model
    if settings.reinitialize and not found.rebuilt:
      # The discovered group, fresh weights: the model as the run's seed first drew it.
      model = restore.build_model(self.config, self.protocol.num_classes,
                                  (restore.frozen_stacks(found.model), record))
    record["reinitialized"] = bool(settings.reinitialize or found.rebuilt)
    scale = learning_rate_scale(record)
    record["learning_rate"] = self.config.learning_rate * scale
    self._build(model, carried=current, rate_scale=scale)
    record["test_accuracy_after"] = self._test_accuracy()
    self._save_checkpoint()
    if self.is_main:  # after the checkpoint: a run killed in between redoes the discovery
      run_files.save_discovered(self.workdir, restore.frozen_stacks(model), record, learned)
    self.discovery = record
    self.writer.write(dict(record, type="discovered"))
    logging.info("step %d: rounded to the discovered %s (%s); test accuracy %.4f -> %.4f",
                 self.step, "backbone averaged over" if found.kept_backbone else "G-CNN",
                 record["group"], before, record["test_accuracy_after"])

  # -- finish --------------------------------------------------------------------------------
  def close(self) -> None:
    """Closes the progress bar, the checkpointer and the metric writer. While an exception is
    propagating a second error would only bury the first: close errors then go to the debug
    log."""
    self.progress.close()
    propagating = sys.exc_info()[0] is not None
    for closer in (self.checkpointer.close, self.writer.close):
      try:
        closer()
      except Exception:  # pylint: disable=broad-except
        if not propagating:
          raise
        logging.debug("error while closing after a failure", exc_info=True)

  def finish(self) -> dict[str, Any]:
    """Writes ``results.json`` (and the figures) and returns the summary; raises
    :class:`TrainingDivergedError` after a divergence."""
    config, workdir, diverged = self.config, self.workdir, self.diverged
    evals = run_files.read_metrics(workdir, "eval") if self.is_main else []
    final = evals[-1] if evals else {}
    best = max(evals, key=lambda r: r["test_accuracy"]) if evals else {}
    figures = []
    if diverged is None:
      if self.last_stacks is None:
        self.last_stacks = self._stacks()
      if self.last_summaries is None:
        self.last_summaries = _symmetry_summaries(self.last_stacks, self.metadata)
      if self.is_main and self.last_stacks:  # also rewrites a lost or truncated stacks.npz
        run_files.save_stacks(workdir, self.last_stacks, self.metadata, self.step)
      if self.is_main and config.save_figures:
        model = self.steps.train_state(self.state).model
        model.eval()
        at_discovery = (run_files.load_learned_at_discovery(workdir)
                        if self.discovery is not None else None)
        figures = _save_figures(workdir, model, self.last_stacks, self.metadata,
                                at_discovery, self.discovery)
    elif self.last_summaries is None:  # the state is not finite: keep what was measured
      self.last_summaries = {}
    step = self.step if diverged is None else diverged.step
    summary = {
        "status": "finished" if diverged is None else "diverged",
        "model": config.model, "protocol": config.protocol, "step": step,
        "epochs": step / self.steps_per_epoch,
        "final_test_accuracy": final.get("test_accuracy"),
        "final_train_accuracy": final.get("train_accuracy"),
        "best_test_accuracy": best.get("test_accuracy"), "best_epoch": best.get("epoch"),
        "parameters": self.parameters, "num_devices": self.num_devices,
        "wall_time_s": time.time() - self.start_time, "compile_s": self.compile_seconds,
        "images_per_second": (self.train_steps_timed * config.batch_size / self.train_seconds
                              if self.train_seconds > 0 and self.train_steps_timed else None),
        "resumed_from_step": self.restored_step,
        "learned_symmetry": self.last_summaries, "figures": figures,
        "discovery": self.discovery,
        "config": run_files.config_as_dict(config),
        "provenance": provenance.collect(),
    }
    if diverged is not None:
      summary.update(diverged_at_step=diverged.step, divergence=diverged.reason,
                     last_checkpoint_step=self.last_checkpoint)
    if self.is_main:
      run_files.write_results(workdir, summary)
    if diverged is not None:
      kept = ("no checkpoint was written before it" if self.last_checkpoint is None else
              f"the last finite checkpoint is at step {self.last_checkpoint}")
      again = ("starts over" if self.last_checkpoint is None
               else f"resumes from step {self.last_checkpoint}")
      raise TrainingDivergedError(
          f"training diverged: {diverged.reason}; stopped ({kept}); "
          f"what was measured until then is in {run_files.path(workdir, run_files.METRICS)} "
          f"and {run_files.RESULTS}. The same command {again} and diverges again: train in a "
          f"new workdir with a smaller config.learning_rate (this run: "
          f"{config.learning_rate:g}) or config.grad_clip_norm > 0 (this run: "
          f"{config.grad_clip_norm:g})") from None
    logging.info("final test accuracy %s (best %s at epoch %s); wall time %.1f s",
                 summary["final_test_accuracy"], summary["best_test_accuracy"],
                 summary["best_epoch"], summary["wall_time_s"])
    return summary


def _safe_name(path: str) -> str:
  return path.replace("/", "_") or "root"


def _save_figures(workdir: str, model, stacks: dict, metadata: dict,
                  at_discovery: dict | None = None, discovery: dict | None = None) -> list[str]:
  """PNGs of the learned stacks and lifting-kernel orbits; their paths relative to workdir.

  A run rounded to its discovered G-CNN has no learned stack left: ``at_discovery`` (layer →
  ``[G, d, d]``, the learned stacks just before the rounding, ``discovery`` its record) are
  plotted instead, and the lifting kernels' orbits under the exact stacks it was rounded to.
  """
  learned = {name: stack for name, stack in stacks.items() if metadata[name]["learned"]}
  suffix, note = "", ""
  if not learned and at_discovery:
    learned, suffix = at_discovery, "_at_discovery"
    note = f", step {discovery['step']}, before rounding to {discovery['group']}"
  if not learned:
    return []
  from ds_symmetry.analysis import plot_kernel_orbit, plot_stack  # pylint: disable=import-outside-toplevel
  directory = run_files.path(workdir, run_files.FIGURES)
  os.makedirs(directory, exist_ok=True)
  layers = dict(weight_sharing_layers(model))
  written = []
  for name, stack in learned.items():
    path = os.path.join(directory, f"{_safe_name(name)}_stack{suffix}.png")
    plot_stack(stack, path, title=f"{name} ({metadata[name]['kind']}{note})")
    written.append(os.path.relpath(path, workdir))
    if metadata[name]["kind"] == "lift" and name in layers:
      path = os.path.join(directory, f"{_safe_name(name)}_kernel_orbit.png")
      plot_kernel_orbit(np.asarray(layers[name].weight[...]), stacks[name], path)
      written.append(os.path.relpath(path, workdir))
  return written
