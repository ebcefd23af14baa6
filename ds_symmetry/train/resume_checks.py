"""Checks a resumed run's length against what its workdir has done, before anything is written.

A run is never shortened below the steps it has checkpointed (its ``results.json`` would
otherwise stay at the old step while the config says fewer), and the length of a run whose
learning rate depends on it (a cosine schedule) is not changed once steps are done: the steps
already taken followed the old schedule, and the new one would restart mid-way at another rate.
"""

from __future__ import annotations

import math

from ds_symmetry import run_files


def _saved_total_steps(saved: dict, steps_per_epoch: int) -> int | None:
  try:
    if int(saved.get("num_train_steps", -1)) > 0:
      return int(saved["num_train_steps"])
    return int(saved["num_epochs"]) * steps_per_epoch
  except (KeyError, TypeError, ValueError):
    return None


def _length_field(config) -> str:
  return "num_train_steps" if config.num_train_steps > 0 else "num_epochs"


def check_run_length(config, workdir: str, total_steps: int, steps_per_epoch: int) -> None:
  """Raises ``ValueError`` (one line, naming the field) if ``workdir`` holds a checkpoint
  beyond ``total_steps``, or if a schedule-dependent run (``config.schedule`` not
  ``"constant"``) with checkpoints would change its length. Reads the checkpoint listing and
  ``config.json`` only."""
  done = max(run_files.checkpoint_steps(workdir), default=0)
  if not done:
    return
  field = _length_field(config)
  value = config[field]
  if done > total_steps:
    needed = (str(done) if field == "num_train_steps"
              else str(math.ceil(done / steps_per_epoch)))
    raise ValueError(
        f"config.{field}: {value} ends the run at step {total_steps}, but workdir {workdir!r} "
        f"has done {done} steps (its newest checkpoint); a run is not shortened: set "
        f"{field} >= {needed}, or use a new workdir")
  if config.schedule == "constant":
    return
  saved = run_files.read_config(workdir, strict=False)
  saved_total = None if saved is None else _saved_total_steps(saved, steps_per_epoch)
  if saved_total is not None and saved_total != total_steps:
    raise ValueError(
        f"config.{field}: {value} makes the run {total_steps} steps long, but its "
        f"{config.schedule!r} learning-rate schedule was laid out for {saved_total} steps, "
        f"of which {done} are done; changing the length would restart the schedule mid-way "
        f"at another rate. Keep {field} as recorded in {run_files.CONFIG}, or start a new "
        f"workdir")
