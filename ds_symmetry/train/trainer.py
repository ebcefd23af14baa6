"""``train_and_evaluate(config, workdir)``: the training loop.

What a run writes into ``workdir``::

  config.json          the resolved config (a run of a different one in this workdir is an
                       error, checked before anything is read or written)
  metrics.jsonl        one JSON record per line: ``{"type": "train", ...}`` every
                       ``log_every_steps`` and ``{"type": "eval", ...}`` per evaluated epoch
  tensorboard/         the same numbers as TensorBoard events
  checkpoints/<step>/  Orbax checkpoints with a checksum (the last ``keep_checkpoints``;
                       see ``checkpointing``); rejected ones go to rejected_checkpoints/
  stacks.npz           every weight-sharing layer's stack at the latest evaluation
  figures/*.png        learned stacks and lifting-kernel orbits (at the end)
  results.json         final summary: status ("finished" or "diverged"), accuracies,
                       parameter counts, timing, config

Divergence: a non-finite loss (checked every step, one step late so the host does not wait)
or non-finite parameters at a checkpoint stop the run; nothing non-finite is checkpointed, and
:class:`TrainingDivergedError` is raised after ``results.json`` is written.

Determinism: the data order of epoch ``e`` is a permutation drawn from ``(seed, e)``; the key
of step ``s`` is ``fold_in(key(seed), s)``. Checkpoints hold the step and the epoch's running
train sums, so a killed run resumed from its workdir ends with the same parameters and metrics
as an uninterrupted run (bit for bit on CPU). Every epoch drops its last incomplete batch
(``steps_per_epoch = N // batch_size``; each epoch reshuffles).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from ds_symmetry.data import make_protocol
from ds_symmetry.models import create_model
from ds_symmetry.nn.introspection import (count_parameters, representation_stacks,
                                          weight_sharing_layers)
from ds_symmetry.train import config as config_lib
from ds_symmetry.train import steps as steps_lib
from ds_symmetry.train.checkpointing import Checkpointer, NonFiniteStateError
from ds_symmetry.train.metrics import MetricWriter, to_json

DISCOVERED_STACKS_FILE = "discovered_stacks.npz"

STACKS_FILE = "stacks.npz"


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


def _config_dict(config) -> dict:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _check_same_config(workdir: str, config) -> None:
  """Raises ``ValueError`` if ``workdir/config.json`` holds a config that differs from
  ``config`` in a field that changes the math (anything outside
  ``config.RESUMABLE_CHANGES``). Runs before anything is restored or written."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  try:
    with open(path, encoding="utf-8") as file:
      saved = json.load(file)
  except (OSError, ValueError) as error:
    raise ValueError(f"workdir {workdir!r}: {path} is unreadable ({error}); use a new workdir "
                     f"or remove the run") from error
  harmless, breaking = config_lib.config_differences(saved, _config_dict(config))
  if breaking:
    raise ValueError(
        f"workdir {workdir!r} holds a run with a different config (fields {breaking} differ "
        f"from {path}); use a new workdir, or restore those values to resume")
  if harmless:
    logging.warning("resuming with changed config fields %s (allowed: they do not change "
                    "the steps already done)", harmless)


def _write_atomic(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` through a temporary file and a rename."""
  with open(path + ".tmp", "w", encoding="utf-8") as file:
    file.write(text)
    file.flush()
    os.fsync(file.fileno())
  os.replace(path + ".tmp", path)


def _save_config(workdir: str, config) -> None:
  _write_atomic(os.path.join(workdir, "config.json"),
                json.dumps(_config_dict(config), indent=2, sort_keys=True))


# Outputs of a finished or evaluated run; removed when a run starts from step 0 so that a
# report never mixes an earlier run's files with the new one.
_RUN_OUTPUTS = ("results.json", STACKS_FILE, "figures", DISCOVERED_STACKS_FILE)


def _remove_stale_outputs(workdir: str) -> None:
  for name in _RUN_OUTPUTS:
    path = os.path.join(workdir, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
      logging.info("removed %s of an earlier run", path)
    elif os.path.exists(path):
      os.remove(path)
      logging.info("removed %s of an earlier run", path)


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


def _safe_name(path: str) -> str:
  return path.replace("/", "_") or "root"


def _stack_metadata(model) -> dict[str, dict[str, Any]]:
  return {path: {"kind": info.kind, "kernel_size": info.kernel_size, "learned": info.learned,
                 "num_elements": info.num_elements, "group": info.group or ""}
          for path, info in representation_stacks(model).items()}


def save_stacks(path: str, stacks: dict[str, np.ndarray], metadata: dict, step: int) -> None:
  """``stacks.npz``: ``stack/<layer>``, plus ``meta`` (JSON: kind, kernel size, … per layer)."""
  arrays = {f"stack/{name}": np.asarray(value) for name, value in stacks.items()}
  arrays["meta"] = np.asarray(json.dumps({"step": step, "layers": metadata}))
  with open(path + ".tmp", "wb") as file:
    np.savez(file, **arrays)
    file.flush()
    os.fsync(file.fileno())
  os.replace(path + ".tmp", path)


def _symmetry_summaries(stacks: dict[str, np.ndarray], metadata: dict) -> dict[str, dict]:
  from ds_symmetry.analysis import summarize_stack  # pylint: disable=import-outside-toplevel
  out = {}
  for name, stack in stacks.items():
    if metadata[name]["learned"]:
      out[name] = summarize_stack(np.asarray(stack), metadata[name]["kernel_size"],
                                  metadata[name]["kind"])
  return out


def _layer_metrics(summaries: dict[str, dict]) -> dict[str, dict]:
  keep = ("group", "group_distance", "best_candidate", "cayley_max_error",
          "mean_permutation_distance")
  return {name: {k: v for k, v in summary.items()
                 if k in keep or k.startswith("distance_")}
          for name, summary in summaries.items()}


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains ``config.model`` on ``config.protocol``, evaluating each epoch; resumes ``workdir``.

  Returns the summary also written to ``workdir/results.json``. Raises ``ValueError`` for a bad
  config or workdir (including a workdir holding a run of another config, checked before
  anything is read or written), and :class:`TrainingDivergedError` when the loss or the
  parameters stop being finite (after writing ``results.json`` with ``"status": "diverged"``;
  checkpoints stay at the last finite step).
  """
  run_start = time.time()
  _quiet_orbax_logs()
  config_lib.validate_config(config)
  _check_writable(workdir)
  _check_same_config(workdir, config)
  initialize_distributed(config)
  num_devices = jax.device_count()
  config_lib.validate_config(config, num_devices=num_devices)
  is_main = jax.process_index() == 0
  mesh = make_mesh()
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  chunk_sharding = NamedSharding(mesh, P(None, "data"))

  # Data and model come first: a missing dataset or a bad option fails before any file exists.
  protocol = make_protocol(config.protocol, data_dir=config.data_dir, seed=config.seed,
                           limit_train=config.limit_train, limit_test=config.limit_test,
                           **config.protocol_options.to_dict())
  model = create_model(config.model, num_classes=protocol.num_classes,
                       rngs=nnx.Rngs(config.seed), **config.model_options.to_dict())
  num_train = protocol.train_images.shape[0]
  steps_per_epoch = num_train // config.batch_size
  if steps_per_epoch < 1:
    raise ValueError(f"config.batch_size: {config.batch_size} exceeds the {num_train} training "
                     f"examples; use a smaller batch or more data")
  total_steps = (config.num_train_steps if config.num_train_steps > 0
                 else config.num_epochs * steps_per_epoch)
  num_epochs = math.ceil(total_steps / steps_per_epoch)
  parameters = count_parameters(model)

  # A run that already rounded its model to the discovered G-CNN resumes with frozen stacks.
  discovered_path = os.path.join(workdir, DISCOVERED_STACKS_FILE)
  discovery_record = _load_discovered(discovered_path, model)
  metadata = _stack_metadata(model)

  def build_steps(model):
    functions = steps_lib.ModelFunctions(model)
    tx = steps_lib.make_optimizer(config, functions.param_labels(), total_steps)
    train_step = steps_lib.make_train_step(
        functions, tx, protocol.augment, seed=config.seed,
        norm_weight=config.norm_weight, entropy_weight=config.entropy_weight,
        isometry_weight=config.isometry_weight, mesh=mesh)
    eval_step = steps_lib.make_eval_step(functions, norm_weight=config.norm_weight,
                                         entropy_weight=config.entropy_weight,
                                         isometry_weight=config.isometry_weight, mesh=mesh)
    stacks_fn = jax.jit(lambda params, stats: {
        name: info.stack for name, info in
        representation_stacks(functions.build(params, stats, train=False)).items()})
    return functions, tx, train_step, eval_step, stacks_fn

  functions, tx, train_step, eval_step, stacks_fn = build_steps(model)
  state = jax.device_put(steps_lib.init_state(functions, tx), replicated)

  train_images = _global_array(protocol.train_images, replicated)
  train_labels = _global_array(protocol.train_labels.astype(np.int32), replicated)
  test_chunks = [
      _global_array(a, chunk_sharding) for a in steps_lib.chunk_test_set(
          protocol.test_images, protocol.test_labels, config.eval_batch_size)]

  # Workdir, config, checkpoints, metrics.
  os.makedirs(workdir, exist_ok=True)
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                          state)
  try:
    restored_step, restored = checkpointer.restore(abstract)
    if discovery_record is not None and (restored_step is None
                                         or restored_step < discovery_record["step"]):
      # The checkpoint written at the discovery is gone: resume the run from before it.
      logging.warning("%s has no checkpoint from step %d on; resuming without it",
                      discovered_path, discovery_record["step"])
      discovery_record = None
      model = create_model(config.model, num_classes=protocol.num_classes,
                           rngs=nnx.Rngs(config.seed), **config.model_options.to_dict())
      functions, tx, train_step, eval_step, stacks_fn = build_steps(model)
      state = jax.device_put(steps_lib.init_state(functions, tx), replicated)
      abstract = jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state)
      restored_step, restored = checkpointer.restore(abstract)
      metadata = _stack_metadata(model)
      if is_main:
        os.remove(discovered_path)
  except BaseException:
    checkpointer.close()
    raise
  if restored_step is not None:
    state = restored
    logging.info("resuming from the checkpoint at step %d in %s", restored_step, workdir)
  else:
    logging.info("no checkpoint restored: starting from step 0 in %s", workdir)
    if is_main:
      _remove_stale_outputs(workdir)
  if is_main:
    _save_config(workdir, config)
  start_step = int(restored_step or 0)
  writer = MetricWriter(workdir, start_step, enabled=is_main)

  logging.info("model %s: %d free + %d representation parameters; protocol %s: %d train / %d "
               "test images; %d devices; %d steps (%d epochs of %d steps, batch %d)",
               config.model, parameters["free"], parameters["representation"], config.protocol,
               num_train, protocol.test_images.shape[0], num_devices, total_steps, num_epochs,
               steps_per_epoch, config.batch_size)

  def evaluate(state, step: int, epoch: int):
    """Test metrics, stacks and their symmetry summaries at ``step``; writes the eval record."""
    sums = {k: float(v) for k, v in jax.device_get(state["train_sums"]).items()}
    results = {k: float(v) for k, v in jax.device_get(
        eval_step(state["params"], state["batch_stats"], *test_chunks)).items()}
    record = {"type": "eval", "step": step, "epoch": epoch + 1,
              "epochs_done": step / steps_per_epoch,
              "train_loss": sums["loss"] / sums["count"],
              "train_cross_entropy": sums["cross_entropy"] / sums["count"],
              "train_accuracy": sums["correct"] / sums["count"], **results}
    _require_finite(record["test_loss"], step, "test loss")
    last_stacks = {k: np.asarray(v) for k, v in
                   jax.device_get(stacks_fn(state["params"], state["batch_stats"])).items()}
    last_summaries = None
    if config.track_symmetry and last_stacks:
      last_summaries = _symmetry_summaries(last_stacks, metadata)
      record["layers"] = _layer_metrics(last_summaries)
    record["wall_s"] = time.time() - run_start
    writer.write(record)
    if is_main and last_stacks:
      save_stacks(os.path.join(workdir, STACKS_FILE), last_stacks, metadata, step)
    progress.write(
        f"epoch {epoch + 1}/{num_epochs} (step {step}): train loss {record['train_loss']:.4f}"
        f" acc {record['train_accuracy']:.4f} | test loss {record['test_loss']:.4f} acc "
        f"{record['test_accuracy']:.4f} | norm {record['norm']:.3g} marginal error "
        f"{record['marginal_error']:.2g}")
    return last_stacks, last_summaries

  progress = _Progress(config.progress_bar, total_steps, start_step, config.log_every_steps)
  step = start_step
  compile_seconds = None
  train_seconds, train_steps_timed = 0.0, 0
  last_stacks, last_summaries = None, None
  diverged = None
  # The loss of the newest step, checked one step late so the host never waits on the device
  # (and always before a checkpoint or an evaluation).
  pending_loss = None

  def check_pending():
    nonlocal pending_loss
    if pending_loss is not None:
      loss_step, loss = pending_loss
      pending_loss = None
      _require_finite(float(loss), loss_step)

  def save_checkpoint():
    check_pending()
    try:
      checkpointer.save(step, state)
    except NonFiniteStateError as error:
      raise _Diverged(step, f"the parameters are not finite at step {step}") from error

  try:
    while step < total_steps:
      epoch = step // steps_per_epoch
      order = epoch_order(config.seed, epoch, num_train)
      epoch_end = min((epoch + 1) * steps_per_epoch, total_steps)
      if step % steps_per_epoch == 0:
        state = steps_lib.reset_train_sums(state)
      epoch_start = epoch * steps_per_epoch  # extra evaluations at fractions of the epoch
      mid_epoch_evals = {epoch_start + (j * steps_per_epoch) // config.evals_per_epoch
                         for j in range(1, config.evals_per_epoch)} if (
                             (epoch + 1) % config.eval_every_epochs == 0) else set()
      timer = time.time()
      while step < epoch_end:
        offset = (step % steps_per_epoch) * config.batch_size
        indices = _global_array(order[offset:offset + config.batch_size], batch_sharding)
        call_start = time.time()
        state, step_metrics = train_step(state, train_images, train_labels, indices)
        step += 1
        check_pending()
        pending_loss = (step, step_metrics["loss"])
        if compile_seconds is None:
          jax.block_until_ready(state)
          compile_seconds = time.time() - call_start
          timer = time.time()
        else:
          train_steps_timed += 1
        text = None
        if step % config.log_every_steps == 0:
          values = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
          values["accuracy"] = values.pop("correct") / config.batch_size
          writer.write({"type": "train", "step": step, "epoch": epoch, **values})
          text = f"epoch {epoch + 1}/{num_epochs} loss {values['loss']:.4f}"
          check_pending()
        progress.update(step, text)
        if step in mid_epoch_evals and step < epoch_end:  # the epoch's end evaluates anyway
          eval_start = time.time()
          check_pending()
          last_stacks, last_summaries = evaluate(state, step, epoch)
          save_checkpoint()
          timer += time.time() - eval_start  # keep train_seconds free of evaluation time
        if step == config.discover_at_step and discovery_record is None:
          check_pending()
          before = jax.device_get(eval_step(state["params"], state["batch_stats"], *test_chunks))
          model, discovery_record = _discover(functions, state, config.discover_require_group,
                                              step)
          discovery_record["test_accuracy_before"] = float(before["test_accuracy"])
          functions, tx, train_step, eval_step, stacks_fn = build_steps(model)
          # The rounded model keeps its weights and batch statistics; the optimizer starts
          # afresh for the parameters that are left (the logits are gone).
          state = jax.device_put(dict(
              steps_lib.init_state(functions, tx), step=state["step"],
              batch_stats=state["batch_stats"], train_sums=state["train_sums"]), replicated)
          metadata = _stack_metadata(model)
          results = jax.device_get(eval_step(state["params"], state["batch_stats"],
                                             *test_chunks))
          discovery_record["test_accuracy_after"] = float(results["test_accuracy"])
          save_checkpoint()
          if is_main:  # after the checkpoint: a run killed in between redoes the discovery
            _save_discovered(discovered_path, model, discovery_record)
          writer.write(dict(discovery_record, type="discovered"))
          logging.info("step %d: rounded to the discovered G-CNN (%s); test accuracy %.4f -> "
                       "%.4f", step, discovery_record["group"],
                       discovery_record["test_accuracy_before"],
                       discovery_record["test_accuracy_after"])
        if step % config.checkpoint_every_steps == 0 and step < epoch_end:
          save_checkpoint()
      check_pending()
      jax.block_until_ready(state)
      train_seconds += time.time() - timer

      # End of epoch: evaluate (every eval_every_epochs and at the end), then checkpoint.
      if (epoch + 1) % config.eval_every_epochs == 0 or step == total_steps:
        last_stacks, last_summaries = evaluate(state, step, epoch)
      save_checkpoint()
  except _Diverged as error:
    diverged = error
    last_checkpoint = max(checkpointer.steps(), default=None)
    writer.write({"type": "diverged", "step": error.step, "reason": error.reason,
                  "last_checkpoint": last_checkpoint,
                  "wall_s": time.time() - run_start})
  finally:
    progress.close()
    _close_quietly(checkpointer, writer)

  # Final summary.
  evals = [r for r in writer.records() if r.get("type") == "eval"] if is_main else []
  final = evals[-1] if evals else {}
  best = max(evals, key=lambda r: r["test_accuracy"]) if evals else {}
  if diverged is None:
    final_model = functions.build(jax.device_get(state["params"]),
                                  jax.device_get(state["batch_stats"]), train=False)
    if last_stacks is None:
      last_stacks = {k: np.asarray(v) for k, v in
                     jax.device_get(stacks_fn(state["params"], state["batch_stats"])).items()}
    if last_summaries is None:
      last_summaries = _symmetry_summaries(last_stacks, metadata) if last_stacks else {}
    if is_main and last_stacks:  # also rewrites a lost or truncated file of a finished run
      save_stacks(os.path.join(workdir, STACKS_FILE), last_stacks, metadata, step)
    figures = _save_figures(workdir, final_model, last_stacks, metadata) if (
        is_main and config.save_figures) else []
  else:  # the state is not finite: keep what the last evaluation measured
    figures = []
    if last_summaries is None:
      last_summaries = {}
  summary = {
      "status": "finished" if diverged is None else "diverged",
      "model": config.model, "protocol": config.protocol, "step": step,
      "epochs": step / steps_per_epoch,
      "final_test_accuracy": final.get("test_accuracy"),
      "final_train_accuracy": final.get("train_accuracy"),
      "best_test_accuracy": best.get("test_accuracy"), "best_epoch": best.get("epoch"),
      "parameters": parameters, "num_devices": num_devices,
      "wall_time_s": time.time() - run_start, "compile_s": compile_seconds,
      "images_per_second": (train_steps_timed * config.batch_size / train_seconds
                            if train_seconds > 0 and train_steps_timed else None),
      "train_step_compilations": train_step._cache_size(),  # pylint: disable=protected-access
      "resumed_from_step": restored_step,
      "learned_symmetry": last_summaries, "figures": figures,
      "discovery": discovery_record,
      "config": _config_dict(config),
  }
  if diverged is not None:
    summary.update(step=diverged.step, epochs=diverged.step / steps_per_epoch,
                   diverged_at_step=diverged.step, divergence=diverged.reason,
                   last_checkpoint_step=last_checkpoint)
  if is_main:
    _write_atomic(os.path.join(workdir, "results.json"), to_json(summary))
  if diverged is not None:
    kept = ("no checkpoint was written before it" if last_checkpoint is None else
            f"the last finite checkpoint is at step {last_checkpoint}")
    raise TrainingDivergedError(
        f"training diverged: {diverged.reason}; stopped ({kept}); what was measured until "
        f"then is in "
        f"{os.path.join(workdir, 'metrics.jsonl')} and results.json. Try a smaller "
        f"config.learning_rate or config.grad_clip_norm > 0") from None
  logging.info("final test accuracy %s (best %s at epoch %s); wall time %.1f s",
               summary["final_test_accuracy"], summary["best_test_accuracy"],
               summary["best_epoch"], summary["wall_time_s"])
  return summary


def _discover(functions, state, require_group: bool, step: int):
  """Rounds the model of ``state`` to its discovered G-CNN: ``(model, record)``."""
  from ds_symmetry.discovery import discover_gcnn  # pylint: disable=import-outside-toplevel
  current = functions.build(jax.device_get(state["params"]),
                            jax.device_get(state["batch_stats"]), train=True)
  found = discover_gcnn(current, require_group=require_group)
  discovery = found.discovery
  record = {"step": step, "group": discovery.group, "is_group": discovery.is_group,
            "projection_distances": discovery.projection_distances.tolist(),
            "labelling": None if discovery.labelling is None else discovery.labelling.tolist(),
            "layer_distances": found.layer_distances}
  return found.model, record


def _save_discovered(path: str, model, record: dict) -> None:
  """The frozen stacks of a discovered model and what was found, atomically."""
  arrays = {f"stack/{name}": np.asarray(layer.fixed_stack[...])
            for name, layer in weight_sharing_layers(model) if layer.is_fixed}
  with open(path + ".tmp", "wb") as file:
    np.savez(file, record=np.asarray(json.dumps(record)), **arrays)
  os.replace(path + ".tmp", path)


def _load_discovered(path: str, model) -> dict | None:
  """Freezes ``model``'s stacks as a saved discovery did; its record, or None."""
  if not os.path.exists(path):
    return None
  layers = dict(weight_sharing_layers(model))
  with np.load(path) as data:
    record = json.loads(str(data["record"]))
    stacks = {key[len("stack/"):]: data[key] for key in data.files if key.startswith("stack/")}
  for name, stack in stacks.items():
    if name not in layers:
      raise ValueError(f"{path} freezes layer {name!r}, which this model does not have")
  for name, stack in stacks.items():  # read every stack first: freezing one drops tied ones
    layers[name].freeze_stack(stack)
  logging.info("resuming a run rounded at step %d to its discovered G-CNN (%s)", record["step"],
               record["group"])
  return record


def _close_quietly(checkpointer: Checkpointer, writer: MetricWriter) -> None:
  """Closes both; while an exception is propagating a second error would only bury the first,
  so close errors then go to the debug log."""
  propagating = sys.exc_info()[0] is not None
  for closer in (checkpointer.close, writer.close):
    try:
      closer()
    except Exception:  # pylint: disable=broad-except
      if not propagating:
        raise
      logging.debug("error while closing after a failure", exc_info=True)


def _save_figures(workdir: str, model, stacks: dict, metadata: dict) -> list[str]:
  if not stacks:
    return []
  from ds_symmetry.analysis import plot_kernel_orbit, plot_stack  # pylint: disable=import-outside-toplevel
  directory = os.path.join(workdir, "figures")
  os.makedirs(directory, exist_ok=True)
  layers = dict(weight_sharing_layers(model))
  written = []
  for name, stack in stacks.items():
    if not metadata[name]["learned"]:
      continue
    path = os.path.join(directory, f"{_safe_name(name)}_stack.png")
    plot_stack(stack, path, title=f"{name} ({metadata[name]['kind']})")
    written.append(os.path.relpath(path, workdir))
    if metadata[name]["kind"] == "lift" and name in layers:
      path = os.path.join(directory, f"{_safe_name(name)}_kernel_orbit.png")
      plot_kernel_orbit(np.asarray(layers[name].weight[...]), stack, path)
      written.append(os.path.relpath(path, workdir))
  return written
