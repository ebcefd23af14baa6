"""Orbax checkpoints of the train state, verified when restored.

Layout of ``checkpoints/<step>/`` (one Orbax composite checkpoint)::

  state/      the train state (``ocp.args.StandardSave``)
  checksum/   JSON: ``{"sha256": digest of every leaf's bytes,
                     "leaves": {path: [shape, dtype]}}``

Both items are written into a temporary directory that Orbax renames when complete, so a
process killed while saving leaves no half-written checkpoint under a step name. A restored
state is trusted only if its digest equals the one written at save time and every float is
finite; otherwise the checkpoint is moved to ``rejected_checkpoints/<step>`` beside the
checkpoint directory (so it is neither restored again nor counted by ``keep``) and the
previous one is tried.

A checkpoint whose leaves have other shapes than the model being trained is not "unreadable":
it belongs to another model, and :meth:`Checkpointer.restore` raises
:class:`IncompatibleCheckpointError` instead of silently starting over.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

STATE_ITEM = "state"
CHECKSUM_ITEM = "checksum"
REJECTED_DIR = "rejected_checkpoints"


class IncompatibleCheckpointError(ValueError):
  """A checkpoint holds a state of another structure or other shapes than the current one."""


class NonFiniteStateError(ValueError):
  """A state to be saved holds NaN or infinite values."""


def _host(leaf) -> np.ndarray:
  """One host copy of a (replicated) leaf; works for arrays spanning several processes."""
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
    if not leaf.is_fully_replicated:
      raise ValueError("checkpointing: only replicated train states are supported; got a leaf "
                       f"with sharding {leaf.sharding}")
    return np.asarray(leaf.addressable_shards[0].data)
  return np.asarray(leaf)


def _leaves(state) -> list[tuple[str, Any]]:
  flat, _ = jax.tree_util.tree_flatten_with_path(state)
  return [(jax.tree_util.keystr(path), leaf) for path, leaf in flat]


def leaf_signature(state) -> dict[str, list]:
  """``{path: [shape, dtype]}`` of every leaf (arrays or ``ShapeDtypeStruct``s)."""
  return {path: [list(leaf.shape), str(np.dtype(leaf.dtype))] for path, leaf in _leaves(state)}


def state_digest(state) -> str:
  """sha256 over every leaf's path, shape, dtype and bytes, in pytree order."""
  digest = hashlib.sha256()
  for path, leaf in _leaves(state):
    array = np.ascontiguousarray(_host(leaf))
    digest.update(f"{path}|{array.shape}|{array.dtype}|".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def nonfinite_leaves(state) -> list[str]:
  """Paths of the floating-point leaves holding a NaN or an infinity."""
  bad = []
  for path, leaf in _leaves(state):
    array = _host(leaf)
    if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
      bad.append(path)
  return bad


def _first_line(error: BaseException, limit: int = 200) -> str:
  text = str(error).strip().splitlines()
  line = text[0] if text else ""
  return (line[:limit] + "…") if len(line) > limit else line


def _signature_mismatch(saved: dict, expected: dict) -> str | None:
  """A one-line description of the first difference, or ``None``."""
  missing = sorted(set(expected) - set(saved))
  extra = sorted(set(saved) - set(expected))
  if missing or extra:
    return (f"{len(missing)} leaves missing (e.g. {missing[:1]}), {len(extra)} unexpected "
            f"(e.g. {extra[:1]})")
  for path in expected:
    if list(saved[path]) != list(expected[path]):
      return (f"{path} is {saved[path][0]} {saved[path][1]} in the checkpoint but "
              f"{expected[path][0]} {expected[path][1]} in this model")
  return None


class Checkpointer:
  """``<directory>/<step>``: keeps the last ``keep`` checkpoints; saves synchronously."""

  def __init__(self, directory: str | os.PathLike, keep: int):
    self.directory = os.path.abspath(os.fspath(directory))
    self.rejected_directory = os.path.join(os.path.dirname(self.directory), REJECTED_DIR)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)
    self.restored_step: int | None = None
    self.set_aside_steps: list[int] = []  # other models' checkpoints the last restore moved
    self._written: set[int] = set()  # steps this object restored or saved: known to be good

  # -- saving --------------------------------------------------------------------------------
  def save(self, step: int, state: Any) -> None:
    """Saves ``state`` at ``step`` with its checksum; replaces a checkpoint already at ``step``
    unless this object restored or saved it (then it is identical by construction).

    Raises :class:`NonFiniteStateError` (nothing written) if a float leaf is not finite.
    """
    bad = nonfinite_leaves(state)
    if bad:
      raise NonFiniteStateError(f"refusing to checkpoint step {step}: non-finite values in "
                                f"{len(bad)} leaves (first: {bad[0]})")
    if step in self.manager.all_steps():
      if step in self._written:
        return
      logging.info("replacing the existing checkpoint at step %d", step)
      self.manager.delete(step)
    checksum = {"sha256": state_digest(state), "leaves": leaf_signature(state)}
    self.manager.save(step, args=ocp.args.Composite(
        **{STATE_ITEM: ocp.args.StandardSave(state),
           CHECKSUM_ITEM: ocp.args.JsonSave(checksum)}), force=True)
    self.manager.wait_until_finished()
    self._written.add(step)

  # -- restoring -----------------------------------------------------------------------------
  def _step_path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _restore_one(self, step: int, abstract_state: Any, expected: dict) -> Any:
    """The verified state at ``step``; raises ``IncompatibleCheckpointError`` or another error
    (unreadable, checksum mismatch, non-finite) describing what is wrong."""
    return verified_restore(self.manager, step, abstract_state=abstract_state,
                            expected=expected, where=self.directory)

  def _reject(self, step: int, quiet: bool = False) -> None:
    """Moves the checkpoint at ``step`` out of the checkpoint directory (kept for inspection);
    ``quiet``: logged at INFO (the caller says why in its own warning)."""
    if jax.process_index() == 0:
      target = os.path.join(self.rejected_directory, str(step))
      if os.path.exists(target):
        shutil.rmtree(target)
      os.makedirs(self.rejected_directory, exist_ok=True)
      os.replace(self._step_path(step), target)
      (logging.info if quiet else logging.warning)(
          "moved the rejected checkpoint at step %d to %s", step, target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
      multihost_utils.sync_global_devices(f"ds_symmetry_reject_{step}")
    self.manager.reload()

  def restore(self, abstract_state: Any, min_step: int | None = None, *,
              set_aside_other_models: bool = False) -> tuple[int | None, Any]:
    """The newest checkpoint that reads, verifies and is finite, as ``(step, state)``.

    Returns ``(None, None)`` when there is none. Rejected checkpoints are logged (one line each)
    and moved aside; a fallback to an older one is logged as such. Raises
    :class:`IncompatibleCheckpointError` for a checkpoint of another model. ``min_step``: only
    checkpoints from that step on are tried (older ones, e.g. those of a run before it was
    rounded to its discovered G-CNN, hold another model: their caller restores them with that
    model's ``abstract_state``); ``(None, None)`` if none of those verifies.
    ``set_aside_other_models``: a newer checkpoint of another model (that of a discovered G-CNN
    whose ``discovered_stacks.npz`` is lost) is moved aside too, quietly (listed in
    :attr:`set_aside_steps`; the caller says why), instead of raising.
    """
    expected = leaf_signature(abstract_state)
    rejected = []
    self.set_aside_steps = []
    steps = [step for step in self.manager.all_steps() if min_step is None or step >= min_step]
    for step in sorted(steps, reverse=True):
      try:
        state = self._restore_one(step, abstract_state, expected)
      except IncompatibleCheckpointError:
        if not set_aside_other_models:
          raise
        self.set_aside_steps.append(step)
        continue
      except Exception as error:  # pylint: disable=broad-except
        logging.warning("checkpoint at step %d in %s is rejected: %s: %s", step, self.directory,
                        type(error).__name__, _first_line(error))
        logging.debug("checkpoint at step %d: full error", step, exc_info=True)
        rejected.append(step)
        continue
      for bad_step in rejected:
        self._reject(bad_step)
      for other_step in self.set_aside_steps:
        self._reject(other_step, quiet=True)
      if rejected:
        logging.warning("falling back to the checkpoint at step %d (newer checkpoint(s) at "
                        "step(s) %s were rejected)", step, rejected)
      self.restored_step = step
      self._written.add(step)
      return step, state
    for bad_step in rejected:
      self._reject(bad_step)
    for other_step in self.set_aside_steps:
      self._reject(other_step, quiet=True)
    if rejected:
      logging.warning("no checkpoint in %s could be restored", self.directory)
    return None, None

  def steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def checkpoint_digest(directory: str | os.PathLike, step: int) -> str:
  """The sha256 digest recorded when the checkpoint at ``step`` under ``directory`` was saved
  (the state itself is not read): what identifies a checkpoint's content, e.g. for caches of
  results derived from it. Raises ``FileNotFoundError`` without that checkpoint, and
  :class:`CorruptCheckpointError` if its checksum record is unreadable."""
  directory = os.path.abspath(os.fspath(directory))
  with ocp.CheckpointManager(directory) as manager:
    if step not in manager.all_steps():
      raise FileNotFoundError(f"no checkpoint at step {step} in {directory}")
    try:
      return _read_checksum(manager, step)["sha256"]
    except CorruptCheckpointError:
      raise
    except Exception as error:  # pylint: disable=broad-except
      raise CorruptCheckpointError(f"the checkpoint at step {step} in {directory} is "
                                   f"unreadable: {_first_line(error)}") from error


def read_checkpoint(directory: str | os.PathLike, step: int | None = None, *,
                    expected: dict | None = None, prefix: str = "") -> tuple[int, Any]:
  """``(step, state)`` of a checkpoint under ``directory``, verified like a restore in the
  trainer (:func:`verified_restore`: the recorded digest, finiteness and, given ``expected``,
  the structure), as nested dicts of numpy arrays. Nothing on disk is changed.

  Args:
    directory: a run's ``checkpoints/``.
    step: the checkpoint to read; None: the newest one that verifies (each newer one that does
      not is one warning line).
    expected: ``{path: [shape, dtype]}`` (:func:`leaf_signature`) the state must match, for
      the leaves whose path starts with ``prefix`` (e.g. ``"['model']"`` for a model's
      parameters alone); None: no structure check.

  Raises:
    FileNotFoundError: no (such) checkpoint.
    CorruptCheckpointError: the checkpoint at ``step`` (with ``step`` None: every checkpoint)
      fails verification; the message names it and what is wrong.
    IncompatibleCheckpointError: it holds another model's state (``expected`` differs).
  """
  directory = os.path.abspath(os.fspath(directory))
  with ocp.CheckpointManager(directory) as manager:
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {directory}")
    if step is not None and step not in steps:
      raise FileNotFoundError(f"no checkpoint at step {step} in {directory} (steps: "
                              f"{sorted(steps)})")
    errors = []
    for candidate in ([step] if step is not None else steps):
      try:
        state = verified_restore(manager, candidate, expected=expected, prefix=prefix,
                                 where=directory)
      except IncompatibleCheckpointError:
        raise
      except Exception as error:  # pylint: disable=broad-except
        errors.append(f"step {candidate}: {type(error).__name__}: {_first_line(error)}")
        if step is None:
          logging.warning("checkpoint at step %d in %s is not used: %s", candidate, directory,
                          errors[-1])
        continue
      return candidate, jax.tree.map(np.asarray, state)
  raise CorruptCheckpointError(
      f"no checkpoint in {directory} verifies ({'; '.join(errors)}); it is damaged or was "
      f"written by another program. Rerunning the training command sets damaged checkpoints "
      f"aside and redoes their steps")


# --------------------------------------------------------------------------------------------
# The one verified read
# --------------------------------------------------------------------------------------------
class CorruptCheckpointError(ValueError):
  """A checkpoint does not verify: unreadable, a digest mismatch or non-finite values."""


_KEY = re.compile(r"\[(?:'((?:[^'\\]|\\.)*)'|(-?\d+))\]")


def _parse_path(path: str) -> list:
  """``"['model']['convs'][0]['bias']"`` (``jax.tree_util.keystr``) -> ``['model', 'convs', 0,
  'bias']``; raises ``ValueError`` for anything else."""
  keys, position = [], 0
  for match in _KEY.finditer(path):
    if match.start() != position:
      break
    keys.append(match.group(1) if match.group(2) is None else int(match.group(2)))
    position = match.end()
  if position != len(path) or not keys:
    raise ValueError(f"checksum record: leaf path {path!r} is not a pytree key path")
  return keys


def _target_from_signature(leaves: dict) -> dict:
  """The nested dict of ``np.zeros`` a checkpoint with ``{path: [shape, dtype]}`` restores
  into (keys as saved: list indices stay ints, which Orbax alone would turn into strings)."""
  root: dict = {}
  for path, (shape, dtype) in leaves.items():
    keys = _parse_path(path)
    node = root
    for key in keys[:-1]:
      node = node.setdefault(key, {})
      if not isinstance(node, dict):
        raise ValueError(f"checksum record: leaf path {path!r} conflicts with another leaf")
    node[keys[-1]] = np.zeros(tuple(int(d) for d in shape), np.dtype(dtype))
  return root


def _read_checksum(manager, step: int) -> dict:
  checksum = manager.restore(step, args=ocp.args.Composite(
      **{CHECKSUM_ITEM: ocp.args.JsonRestore()}))[CHECKSUM_ITEM]
  if (not isinstance(checksum, dict) or not isinstance(checksum.get("sha256"), str)
      or not isinstance(checksum.get("leaves"), dict)
      or not all(isinstance(v, list) and len(v) == 2 for v in checksum["leaves"].values())):
    raise CorruptCheckpointError(f"the checksum record of step {step} is not "
                                 f'{{"sha256": str, "leaves": {{path: [shape, dtype]}}}}')
  return checksum


def _string_indices(path: str) -> str:
  """A key path with list indices written as strings (as Orbax restores them untargeted)."""
  return re.sub(r"\[(-?\d+)\]", r"['\1']", path)


def _string_keys(signature: dict) -> dict:
  return {_string_indices(path): value for path, value in signature.items()}


def _stored_signature(manager, step: int) -> dict:
  """The signature of the arrays as stored (read without a target), list indices as strings."""
  stored = manager.restore(step, args=ocp.args.Composite(
      **{STATE_ITEM: ocp.args.StandardRestore()}))[STATE_ITEM]
  return _string_keys(leaf_signature(stored))


def verified_restore(manager, step: int, *, abstract_state: Any = None,
                     expected: dict | None = None, prefix: str = "",
                     where: str = "") -> Any:
  """The one way a checkpoint is read: the state at ``step`` of an Orbax ``manager``, verified.

  Checks, in order: the checksum record reads; given ``expected`` (``{path: [shape, dtype]}``,
  restricted to the paths starting with ``prefix``), the recorded structure matches it — if
  not, the stored arrays are compared too, so that a damaged record is reported as damage and
  only a checkpoint whose *arrays* differ raises :class:`IncompatibleCheckpointError`; the
  state restores (into ``abstract_state`` if given, else into the recorded structure); every
  float is finite; its sha256 (:func:`state_digest`) equals the recorded one.

  Raises :class:`IncompatibleCheckpointError`, or another exception describing the damage.
  """
  checksum = _read_checksum(manager, step)
  if expected is not None:
    recorded = {k: v for k, v in checksum["leaves"].items() if k.startswith(prefix)}
    wanted = {k: v for k, v in expected.items() if k.startswith(prefix)}
    mismatch = _signature_mismatch(recorded, wanted)
    if mismatch:
      try:
        stored = {k: v for k, v in _stored_signature(manager, step).items()
                  if k.startswith(_string_indices(prefix))}
      except Exception:  # pylint: disable=broad-except
        stored = None  # unreadable arrays: damage, reported below
      if stored is not None and _signature_mismatch(stored, _string_keys(wanted)):
        raise IncompatibleCheckpointError(
            f"the checkpoint at step {step} in {where or manager.directory} holds another "
            f"model's state ({mismatch}); use a new workdir for a different model (or a run of "
            f"an earlier version of the trainer, whose checkpoints have another layout)")
      raise CorruptCheckpointError(f"its checksum record is damaged ({mismatch}, while the "
                                   f"stored arrays match this model)")
  target = (abstract_state if abstract_state is not None
            else _target_from_signature(checksum["leaves"]))
  state = manager.restore(step, args=ocp.args.Composite(
      **{STATE_ITEM: ocp.args.StandardRestore(target)}))[STATE_ITEM]
  jax.block_until_ready(state)
  bad = nonfinite_leaves(state)
  if bad:
    raise CorruptCheckpointError(f"non-finite values in {len(bad)} leaves (first: {bad[0]})")
  if state_digest(state) != checksum["sha256"]:
    raise CorruptCheckpointError("checksum mismatch: the data differ from what was saved")
  return state
