"""Orbax checkpoints of the train state, with fallback past a corrupt latest checkpoint."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:
  """``workdir/checkpoints/<step>``: keeps the last ``keep`` checkpoints; saves synchronously.

  Orbax writes into a temporary directory and renames it when complete, so a process killed
  while saving leaves no half-written checkpoint behind under a step name. A checkpoint that is
  present but unreadable (e.g. truncated files) is skipped with a warning by :meth:`restore`.
  """

  def __init__(self, directory: str | os.PathLike, keep: int):
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, state: Any) -> None:
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
    self.manager.wait_until_finished()

  def restore(self, abstract_state: Any) -> tuple[int | None, Any]:
    """The newest readable checkpoint as ``(step, state)``, or ``(None, None)``."""
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        jax.block_until_ready(state)
        return step, state
      except Exception as error:  # pylint: disable=broad-except
        logging.warning("checkpoint at step %d in %s is unreadable (%s: %s); trying the "
                        "previous one", step, self.directory, type(error).__name__, error)
    return None, None

  def steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
