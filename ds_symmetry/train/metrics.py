"""Metric outputs: JSON lines (``metrics.jsonl``) and TensorBoard events, resume-aware."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np


def _plain(value):
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "__array__"):
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()
  return value


def to_json(value) -> str:
  """JSON with NaN/inf as null (strict JSON readers accept the file)."""
  def clean(v):
    if isinstance(v, float) and not math.isfinite(v):
      return None
    if isinstance(v, dict):
      return {k: clean(x) for k, x in v.items()}
    if isinstance(v, list):
      return [clean(x) for x in v]
    return v
  return json.dumps(clean(_plain(value)), sort_keys=True)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
  records = []
  if os.path.exists(path):
    with open(path, encoding="utf-8") as file:
      for line in file:
        line = line.strip()
        if line:
          try:
            records.append(json.loads(line))
          except json.JSONDecodeError:
            break  # a line cut by a kill: everything after it is dropped
  return records


def _scalars(prefix: str, record: dict):
  for key, value in record.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      yield from _scalars(name + "/", value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      yield name, float(value)


class MetricWriter:
  """Appends records to ``metrics.jsonl`` and mirrors numeric fields to TensorBoard.

  On resume at step ``S`` the JSONL file is rewritten to the records with ``step <= S`` and the
  TensorBoard writer purges events after ``S``, so nothing is duplicated.
  """

  def __init__(self, workdir: str, resume_step: int | None, enabled: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = enabled
    self.writer = None
    if not enabled:
      return
    kept = [r for r in read_jsonl(self.path)
            if resume_step is not None and r.get("step", 0) <= resume_step]
    temporary = self.path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as file:
      for record in kept:
        file.write(to_json(record) + "\n")
    os.replace(temporary, self.path)
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
    self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"),
                                purge_step=resume_step if resume_step else None)

  def records(self) -> list[dict]:
    return read_jsonl(self.path)

  def write(self, record: dict[str, Any]) -> None:
    if not self.enabled:
      return
    with open(self.path, "a", encoding="utf-8") as file:
      file.write(to_json(record) + "\n")
      file.flush()
      os.fsync(file.fileno())
    step = int(record["step"])
    prefix = record.get("type", "metrics") + "/"
    for name, value in _scalars(prefix, {k: v for k, v in record.items()
                                         if k not in ("step", "type", "epoch")}):
      self.writer.add_scalar(name, value, step)
    self.writer.flush()

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()
