"""Metric outputs: ``metrics.jsonl`` (through ``ds_symmetry.run_files``) mirrored to TensorBoard,
resume-aware."""

from __future__ import annotations

import os
from typing import Any

from ds_symmetry import run_files


def _scalars(prefix: str, record: dict):
  for key, value in record.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      yield from _scalars(name + "/", value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      yield name, float(value)


class MetricWriter:
  """Appends records to ``metrics.jsonl`` and mirrors numeric fields to TensorBoard.

  On resume at step ``S`` the JSONL file is cut to the records with ``step <= S`` and the
  TensorBoard writer purges events after ``S``, so nothing is duplicated. Disabled (all
  processes but the first of a multi-host run), it writes nothing.
  """

  def __init__(self, workdir: str, resume_step: int | None, enabled: bool = True):
    self.workdir = workdir
    self.enabled = enabled
    self.writer = None
    if not enabled:
      return
    run_files.keep_metrics(workdir, resume_step)
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
    self.writer = SummaryWriter(os.path.join(workdir, run_files.TENSORBOARD),
                                purge_step=resume_step if resume_step else None)

  def write(self, record: dict[str, Any]) -> None:
    """Appends ``record`` (with ``"step"``) to ``metrics.jsonl`` and its numbers to TensorBoard,
    tagged ``<type>/<name>``; does nothing on processes other than the writer."""
    if not self.enabled:
      return
    run_files.append_metrics(self.workdir, record)
    step = int(record["step"])
    prefix = record.get("type", "metrics") + "/"
    for name, value in _scalars(prefix, {k: v for k, v in record.items()
                                         if k not in ("step", "type", "epoch")}):
      self.writer.add_scalar(name, value, step)
    self.writer.flush()

  def close(self) -> None:
    """Flushes and closes the TensorBoard writer."""
    if self.writer is not None:
      self.writer.close()
