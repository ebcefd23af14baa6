"""The files of a training run's workdir: their names, and the one reader and writer of each.

=======================  ==================================================================
``config.json``          the resolved config (:func:`write_config` / :func:`read_config`)
``metrics.jsonl``        one JSON record per line, ``"type"`` ``"train"``, ``"eval"``,
                         ``"discovered"`` or ``"diverged"`` (:func:`append_metrics` /
                         :func:`read_metrics`; :func:`keep_metrics` truncates on resume)
``stacks.npz``           every weight-sharing layer's stack at the latest evaluation:
                         ``stack/<layer>`` float ``[G, d, d]`` and ``meta`` (JSON: ``{"step",
                         "layers": {layer: {"kind", "kernel_size", "learned", "num_elements",
                         "group"}}}``) (:func:`save_stacks` / :func:`load_stacks`)
``discovered_stacks.npz``  the frozen stacks of a run rounded to its discovered G-CNN:
                         ``stack/<layer>`` ``[G, d, d]``, ``record`` (JSON, what was found)
                         and ``learned/<layer>`` ``[G, d, d]``, the learned layers' soft
                         stacks just before the rounding (:func:`save_discovered` /
                         :func:`load_discovered`, :func:`load_learned_at_discovery`)
``discovered.json``      ``{step: {...}}``, the discovered G-CNN of each kept checkpoint, each
                         entry with the checkpoint's digest (``checkpoint_sha256``), cached by
                         ``experiments.same_budget_report``
``results.json``         the final summary (:func:`write_results` / :func:`read_results`)
``checkpoints/``         Orbax checkpoints (``ds_symmetry.train.checkpointing``)
``tensorboard/``, ``figures/``   TensorBoard events, PNGs
=======================  ==================================================================

Every file but ``metrics.jsonl`` is written atomically (:func:`atomic_write`): into a temporary
file beside it, flushed and fsynced, then renamed over the old one, so a reader or a kill sees
the old file or the new one, never part of one; a failed write leaves the old file as it was.
``metrics.jsonl`` is appended a line at a time (fsynced); a line cut by a kill ends the
readable records. JSON is written with NaN and infinities as ``null`` (:func:`to_json`).

A file that exists but cannot be parsed raises :class:`UnreadableRunFile` (a ``ValueError``)
naming it; a missing file reads as ``None`` (or ``[]`` for the metrics).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import zipfile
from typing import Any, Iterator

import numpy as np

CONFIG = "config.json"
METRICS = "metrics.jsonl"
STACKS = "stacks.npz"
DISCOVERED_STACKS = "discovered_stacks.npz"
RESULTS = "results.json"
DISCOVERED_CURVE = "discovered.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
FIGURES = "figures"

# What a finished or evaluated run leaves: removed when a run starts from step 0, so that a
# report never mixes an earlier run's files with the new one.
RUN_OUTPUTS = (RESULTS, STACKS, FIGURES, DISCOVERED_STACKS, DISCOVERED_CURVE)


class UnreadableRunFile(ValueError):
  """A workdir file exists but cannot be parsed (truncated, corrupt, or not what it should be)."""


def path(workdir: str | os.PathLike, name: str) -> str:
  """``workdir/name`` as a string."""
  return os.path.join(os.fspath(workdir), name)


def _unreadable(file_path: str, error: BaseException) -> UnreadableRunFile:
  return UnreadableRunFile(f"{file_path} is unreadable ({type(error).__name__}: {error}); it "
                           f"may be truncated: rerun the training command to rewrite it")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_write(file_path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
  """Opens a temporary file beside ``file_path``; on success it replaces ``file_path``.

  ``mode`` is ``"w"`` (text, UTF-8) or ``"wb"``. If the body raises, the temporary file is
  removed and ``file_path`` keeps its old content (or stays absent).
  """
  file_path = os.fspath(file_path)
  temporary = file_path + ".tmp"
  try:
    with open(temporary, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as file:
      yield file
      file.flush()
      os.fsync(file.fileno())
    os.replace(temporary, file_path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(temporary)
    raise


def _plain(value):
  """numpy / jax scalars and arrays as Python numbers and lists."""
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "__array__"):
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()
  return value


def _finite_or_none(value):
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _finite_or_none(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_finite_or_none(v) for v in value]
  return value


def to_json(value, indent: int | None = None) -> str:
  """JSON with sorted keys, arrays as lists and NaN/inf as ``null`` (strict readers accept it)."""
  return json.dumps(_finite_or_none(_plain(value)), sort_keys=True, indent=indent)


def write_json(file_path: str | os.PathLike, value, indent: int | None = None) -> None:
  """``value`` as JSON (:func:`to_json`), atomically."""
  with atomic_write(file_path) as file:
    file.write(to_json(value, indent=indent))


def write_config(workdir: str | os.PathLike, config: dict) -> None:
  """``config.json``: the config as a plain dict (:func:`config_as_dict`)."""
  write_json(path(workdir, CONFIG), config, indent=2)


def write_results(workdir: str | os.PathLike, results: dict) -> None:
  write_json(path(workdir, RESULTS), results)


def append_metrics(workdir: str | os.PathLike, record: dict) -> None:
  """Appends one record as a line of ``metrics.jsonl`` (flushed and fsynced)."""
  with open(path(workdir, METRICS), "a", encoding="utf-8") as file:
    file.write(to_json(record) + "\n")
    file.flush()
    os.fsync(file.fileno())


def keep_metrics(workdir: str | os.PathLike, last_step: int | None) -> None:
  """Rewrites ``metrics.jsonl`` to its records with ``step <= last_step`` (none if None)."""
  kept = [r for r in read_metrics(workdir)
          if last_step is not None and r.get("step", 0) <= last_step]
  with atomic_write(path(workdir, METRICS)) as file:
    file.writelines(to_json(record) + "\n" for record in kept)


def _save_npz(file_path: str, arrays: dict[str, np.ndarray]) -> None:
  with atomic_write(file_path, "wb") as file:
    np.savez(file, **arrays)


def save_stacks(workdir: str | os.PathLike, stacks: dict[str, np.ndarray],
                layers: dict[str, dict], step: int) -> None:
  """``stacks.npz``: ``stacks`` (layer → ``[G, d, d]``) and ``layers`` (layer → its metadata)."""
  arrays = {f"stack/{name}": np.asarray(value) for name, value in stacks.items()}
  arrays["meta"] = np.asarray(json.dumps({"step": step, "layers": layers}))
  _save_npz(path(workdir, STACKS), arrays)


def save_discovered(workdir: str | os.PathLike, stacks: dict[str, np.ndarray],
                    record: dict, learned: dict[str, np.ndarray] | None = None) -> None:
  """``discovered_stacks.npz``: the frozen stacks (layer → ``[G, d, d]``), the record and,
  when given, the learned stacks they were rounded from (layer → ``[G, d, d]``)."""
  arrays = {f"stack/{name}": np.asarray(value) for name, value in stacks.items()}
  arrays.update({f"learned/{name}": np.asarray(value) for name, value in (learned or {}).items()})
  arrays["record"] = np.asarray(to_json(record))
  _save_npz(path(workdir, DISCOVERED_STACKS), arrays)


def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
  """The steps of the checkpoints saved under ``workdir/checkpoints`` (finished ones: Orbax
  renames a checkpoint's temporary directory to its step when complete), sorted; none are
  read or verified."""
  directory = path(workdir, CHECKPOINTS)
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def remove_outputs(workdir: str | os.PathLike) -> list[str]:
  """Removes :data:`RUN_OUTPUTS` (files and directories); returns the paths removed."""
  removed = []
  for name in RUN_OUTPUTS:
    target = path(workdir, name)
    if os.path.isdir(target):
      shutil.rmtree(target)
    elif os.path.exists(target):
      os.remove(target)
    else:
      continue
    removed.append(target)
  return removed


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def read_json(file_path: str | os.PathLike, *, strict: bool = True):
  """The JSON value in ``file_path``; ``None`` if it does not exist. An unreadable file raises
  :class:`UnreadableRunFile`, or reads as ``None`` when not ``strict``."""
  file_path = os.fspath(file_path)
  try:
    with open(file_path, encoding="utf-8") as file:
      return json.load(file)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as error:
    if strict:
      raise _unreadable(file_path, error) from error
    return None


def read_config(workdir: str | os.PathLike, *, strict: bool = True) -> dict | None:
  """``config.json`` as a dict, or ``None`` (see :func:`read_json`)."""
  return read_json(path(workdir, CONFIG), strict=strict)


def read_results(workdir: str | os.PathLike, *, strict: bool = True) -> dict | None:
  """``results.json`` as a dict, or ``None`` (see :func:`read_json`)."""
  return read_json(path(workdir, RESULTS), strict=strict)


def read_jsonl(file_path: str | os.PathLike) -> list[dict]:
  """Every record of a JSON-lines file up to the first unparsable line (a line cut by a kill);
  ``[]`` if the file does not exist."""
  records = []
  if os.path.exists(file_path):
    with open(file_path, encoding="utf-8") as file:
      for line in file:
        line = line.strip()
        if line:
          try:
            records.append(json.loads(line))
          except json.JSONDecodeError:
            break
  return records


def read_metrics(workdir: str | os.PathLike, kind: str | None = None) -> list[dict]:
  """The records of ``metrics.jsonl`` (only those of type ``kind`` if given)."""
  records = read_jsonl(path(workdir, METRICS))
  return records if kind is None else [r for r in records if r.get("type") == kind]


def _load_npz(file_path: str, meta_key: str,
              prefix: str = "stack/") -> tuple[dict[str, np.ndarray], Any]:
  try:
    with np.load(file_path) as data:
      meta = json.loads(str(data[meta_key]))
      stacks = {key[len(prefix):]: data[key] for key in data.files if key.startswith(prefix)}
  except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
    raise _unreadable(file_path, error) from error
  return stacks, meta


def load_stacks(workdir: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict] | None:
  """``({layer: stack [G, d, d]}, meta)`` from ``stacks.npz``; ``None`` if it does not exist.

  ``meta`` is ``{"step": int, "layers": {layer: {"kind", "kernel_size", "learned",
  "num_elements", "group"}}}``; a file whose stacks have no metadata is unreadable.
  """
  file_path = path(workdir, STACKS)
  if not os.path.exists(file_path):
    return None
  stacks, meta = _load_npz(file_path, "meta")
  try:
    for name in stacks:
      bool(meta["layers"][name]["learned"])
  except (KeyError, TypeError) as error:
    raise _unreadable(file_path, error) from error
  return stacks, meta


def load_discovered(workdir: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict] | None:
  """``({layer: frozen stack [G, d, d]}, record)`` from ``discovered_stacks.npz``, or None."""
  file_path = path(workdir, DISCOVERED_STACKS)
  if not os.path.exists(file_path):
    return None
  return _load_npz(file_path, "record")


def load_learned_at_discovery(workdir: str | os.PathLike) -> dict[str, np.ndarray] | None:
  """``{layer: learned stack [G, d, d]}`` as it was just before the rounding, from
  ``discovered_stacks.npz``; None without that file (``{}`` if it predates these stacks)."""
  file_path = path(workdir, DISCOVERED_STACKS)
  if not os.path.exists(file_path):
    return None
  return _load_npz(file_path, "record", prefix="learned/")[0]


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------
def config_as_dict(config) -> dict:
  """An ``ml_collections.ConfigDict`` as the plain dict ``config.json`` records."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


ABSENT = object()  # the value of a field a config does not have


def _flatten(config: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in config.items():
    if isinstance(value, dict) and value:
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def diff_configs(saved: dict, current: dict, *,
                 recorded_only: bool = False) -> list[tuple[str, Any, Any]]:
  """``[(dotted field, saved value, current value)]`` where two config dicts differ, sorted.

  Nested dicts (``model_options``) are compared field by field; a field one side lacks has
  the value :data:`ABSENT` there. ``recorded_only``: skip fields ``saved`` does not have at all
  (a run recorded before the field existed; defaults are kept when fields are added).
  """
  flat_saved, flat_current = _flatten(saved), _flatten(current)
  keys = set(flat_saved) if recorded_only else set(flat_saved) | set(flat_current)
  return [(key, flat_saved.get(key, ABSENT), flat_current.get(key, ABSENT))
          for key in sorted(keys)
          if flat_saved.get(key, ABSENT) != flat_current.get(key, ABSENT)]

