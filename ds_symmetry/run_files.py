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
                         :func:`load_discovered`, :func:`load_learned_at_discovery`); a
                         damaged one is set aside as ``discovered_stacks.damaged.npz``
                         (:func:`set_aside_discovered`) when the trainer resumes the run
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
``metrics.jsonl`` is appended a line at a time (fsynced); a line cut by a kill or damaged
otherwise is skipped by the readers, and every intact record around it is kept (damaged lines
are set aside in ``metrics.damaged.jsonl`` when a resume rewrites the file). JSON is written with NaN and infinities as ``null`` (:func:`to_json`).

A config recorded by an earlier version (``config.json``, ``results.json``'s ``"config"``) is
read with the fields renamed since then translated (:func:`upgrade_config`), so an old run
still resumes, reports and tabulates.

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
from absl import logging

CONFIG = "config.json"
METRICS = "metrics.jsonl"
STACKS = "stacks.npz"
DISCOVERED_STACKS = "discovered_stacks.npz"
RESULTS = "results.json"
DISCOVERED_CURVE = "discovered.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
FIGURES = "figures"
LOCK = "workdir.lock"
DAMAGED_METRICS = "metrics.damaged.jsonl"
DAMAGED_DISCOVERED = "discovered_stacks.damaged.npz"

# What a finished or evaluated run leaves: removed when a run starts from step 0, so that a
# report never mixes an earlier run's files with the new one.
RUN_OUTPUTS = (RESULTS, STACKS, FIGURES, DISCOVERED_STACKS, DISCOVERED_CURVE)


class UnreadableRunFile(ValueError):
  """A workdir file exists but cannot be parsed (truncated, corrupt, or not what it should be)."""


def path(workdir: str | os.PathLike, name: str) -> str:
  """``workdir/name`` as a string."""
  return os.path.join(os.fspath(workdir), name)


def _unreadable(file_path: str, error: BaseException) -> UnreadableRunFile:
  return UnreadableRunFile(f"{file_path} is unreadable ({type(error).__name__}: "
                           f"{_first_line(error)}); it is truncated or was replaced: restore it "
                           f"from a copy, or move the run aside and start it in a new workdir")


def _first_line(error: BaseException, limit: int = 160) -> str:
  lines = str(error).strip().splitlines()
  line = lines[0] if lines else type(error).__name__
  return line if len(line) <= limit else line[:limit] + "…"


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


def keep_metrics(workdir: str | os.PathLike, last_step: int | None) -> int:
  """Rewrites ``metrics.jsonl`` to its intact records with ``step <= last_step`` (none if None),
  in their order; returns how many damaged lines were set aside.

  A damaged line (not a JSON object) is never silently dropped with the records after it:
  every intact record is kept, and each damaged line but a cut last one (what a kill during an
  append leaves) is appended to ``metrics.damaged.jsonl`` with a warning line.
  """
  records, damaged = scan_jsonl(path(workdir, METRICS))
  kept = [r for r in records if last_step is not None and _step(r) <= last_step]
  if damaged:
    with open(path(workdir, DAMAGED_METRICS), "a", encoding="utf-8") as file:
      file.writelines(line + "\n" for _, line in damaged)
      file.flush()
      os.fsync(file.fileno())
    logging.warning("%s: %d damaged line(s) (line %s) set aside in %s; the %d intact records "
                    "around them are kept", path(workdir, METRICS), len(damaged),
                    ", ".join(str(number) for number, _ in damaged[:5]), DAMAGED_METRICS,
                    len(records))
  with atomic_write(path(workdir, METRICS)) as file:
    file.writelines(to_json(record) + "\n" for record in kept)
  return len(damaged)


def _step(record: dict) -> float:
  step = record.get("step", 0)
  return step if isinstance(step, (int, float)) and not isinstance(step, bool) else 0


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
  """``config.json`` as a dict, or ``None`` (see :func:`read_json`). With ``strict``, a file
  that parses but is not this library's config (:func:`is_run_config`) is unreadable too;
  otherwise any JSON object is returned as it is."""
  file_path = path(workdir, CONFIG)
  value = read_json(file_path, strict=strict)
  if value is None or is_run_config(value):
    return None if value is None else upgrade_config(value)
  if strict:
    raise UnreadableRunFile(f"{file_path} is not this library's config (found "
                            f"{_describe_json(value)}, expected a JSON object with the fields "
                            f"{sorted(RUN_CONFIG_FIELDS)} among others)")
  return value if isinstance(value, dict) else None  # lenient readers take what there is


# Fields every config.json of this library records (``ds_symmetry.train.config``).
RUN_CONFIG_FIELDS = frozenset({"model", "protocol", "seed", "batch_size", "learning_rate"})


def is_run_config(value) -> bool:
  """Whether a parsed ``config.json`` is one this library wrote."""
  return isinstance(value, dict) and RUN_CONFIG_FIELDS <= set(value)


def _describe_json(value) -> str:
  if isinstance(value, dict):
    return f"an object with the fields {sorted(value)[:8]}"
  return f"a JSON {type(value).__name__} ({json.dumps(value)[:40]})"


# --------------------------------------------------------------------------------------------
# What a directory is
# --------------------------------------------------------------------------------------------
class NotARunError(ValueError):
  """A non-empty directory that is not a run of this library (no ``config.json`` of ours)."""


def _own_entry(name: str) -> bool:
  """The lock and its temporary files: what an interrupted start may leave in a new run."""
  return name == LOCK or (name.startswith(LOCK + ".") and name.endswith(".tmp"))


def workdir_kind(workdir: str | os.PathLike, *, adopt: bool = False) -> str:
  """``"new"`` (absent, or empty but for a lock), ``"run"`` (holds this library's
  ``config.json``) or, with ``adopt``, ``"adopted"`` (any other directory). Reads only the
  directory listing and ``config.json``; changes nothing.

  Raises :class:`NotARunError` for another non-empty directory (unless ``adopt``), and
  :class:`UnreadableRunFile` for a ``config.json`` that does not parse or is not ours (unless
  ``adopt``): a run is never mistaken for a new one, nor a user's folder for a run.
  """
  directory = os.fspath(workdir)
  if not os.path.isdir(directory):
    return "new"
  entries = sorted(name for name in os.listdir(directory) if not _own_entry(name))
  if not entries:
    return "new"
  if CONFIG in entries:
    try:
      read_config(directory)
      return "run"
    except UnreadableRunFile as error:
      if adopt:
        return "adopted"
      raise UnreadableRunFile(f"workdir {directory!r}: {error}. Nothing was changed; "
                              f"--adopt_workdir would train there anyway, replacing "
                              f"{CONFIG}") from None
  if adopt:
    return "adopted"
  shown = [name + ("/" if os.path.isdir(os.path.join(directory, name)) else "")
           for name in entries[:6]]
  more = f" and {len(entries) - 6} more" if len(entries) > 6 else ""
  hint = (f"; it holds {CHECKPOINTS}/ but no {CONFIG}: restore {CONFIG} to resume it"
          if CHECKPOINTS in entries else "")
  raise NotARunError(
      f"workdir {directory!r} is not empty and is not a run of this library (no {CONFIG}; it "
      f"holds {', '.join(shown)}{more}){hint}. Nothing was changed: use a new or empty "
      f"directory, or pass --adopt_workdir (train_and_evaluate(..., adopt_workdir=True)) to "
      f"train there anyway, replacing any files named like a run's")


def read_results(workdir: str | os.PathLike, *, strict: bool = True) -> dict | None:
  """``results.json`` as a dict, or ``None`` (see :func:`read_json`); its ``"config"``
  through :func:`upgrade_config`."""
  results = read_json(path(workdir, RESULTS), strict=strict)
  if isinstance(results, dict) and isinstance(results.get("config"), dict):
    results["config"] = upgrade_config(results["config"])
  return results


def scan_jsonl(file_path: str | os.PathLike) -> tuple[list[dict], list[tuple[int, str]]]:
  """``(records, damaged)`` of a JSON-lines file: every line that is a JSON object, and
  ``(line number, text)`` of every other non-empty line but a cut last one (a last line
  without its newline that does not parse: what a kill during an append leaves). A missing
  file gives ``([], [])``."""
  records, damaged = [], []
  if not os.path.exists(file_path):
    return records, damaged
  with open(file_path, encoding="utf-8", errors="replace") as file:
    lines = file.read().split("\n")
  for number, line in enumerate(lines, 1):
    text = line.strip()
    if not text:
      continue
    try:
      record = json.loads(text)
    except ValueError:
      record = None
    if isinstance(record, dict):
      records.append(record)
    elif number < len(lines):  # the last piece has no newline: a cut append, not damage
      damaged.append((number, line))
  return records, damaged


def read_jsonl(file_path: str | os.PathLike) -> list[dict]:
  """Every intact record (JSON object) of a JSON-lines file, in order, skipping damaged lines
  (see :func:`scan_jsonl`); ``[]`` if the file does not exist."""
  return scan_jsonl(file_path)[0]


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
  """``({layer: frozen stack [G, d, d]}, record)`` from ``discovered_stacks.npz``, or None.

  A file that does not read (truncated, a bad CRC, a record without its ``step``)
  raises :class:`UnreadableRunFile`; resuming the run recovers from it (the trainer sets the
  file aside with :func:`set_aside_discovered` and redoes the discovery)."""
  file_path = path(workdir, DISCOVERED_STACKS)
  if not os.path.exists(file_path):
    return None
  try:
    stacks, record = _load_npz(file_path, "record")
    if not (isinstance(record, dict) and isinstance(record.get("step"), int)):
      raise ValueError(f"its record is not a discovery's ({str(record)[:60]})")
  except (UnreadableRunFile, ValueError) as error:
    cause = error.__cause__ if isinstance(error, UnreadableRunFile) else error
    raise UnreadableRunFile(
        f"{file_path} is unreadable ({type(cause).__name__}: {_first_line(cause)}); it is "
        f"truncated or was replaced. Resuming the run (its training command) sets it aside as "
        f"{DAMAGED_DISCOVERED} and redoes the discovery from the newest checkpoint before it") \
        from error
  return stacks, record


def set_aside_discovered(workdir: str | os.PathLike) -> str:
  """Moves a damaged ``discovered_stacks.npz`` to ``discovered_stacks.damaged.npz`` (replacing
  an older one), kept for inspection; returns the new path."""
  target = path(workdir, DAMAGED_DISCOVERED)
  os.replace(path(workdir, DISCOVERED_STACKS), target)
  return target


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


# The one translation of config fields renamed since runs were recorded (committed results and
# old workdirs keep their config.json): each old field → the new ones, applied to every config
# read back (read_config, read_results), so a recorded run is the same config as today's.
# model_options.sharing (one name for two choices) became factorise (what the group layers'
# stack is a product of) and tie (what its factors are tied to); every old value is one pair
# (the layers take the pair too; nn.stacks.STRUCTURES holds the same table, tested to agree).
LEGACY_SHARING = {"full": ("none", "none"), "kronecker": ("kronecker", "none"),
                  "tied": ("kronecker", "spatial"), "tied_shared": ("kronecker", "shared"),
                  "tied_cayley": ("kronecker", "cayley"), "tied_cyclic": ("kronecker", "cyclic")}
# The discovery settings were top-level fields; they are the block config.discovery now.
LEGACY_DISCOVERY = {"discover_at_step": "at_step", "discover_when_within": "when_within",
                    "discover_check_every_steps": "check_every_steps",
                    "discover_require_group": "require_group",
                    "discover_reinitialize": "reinitialize", "stop_after_discovery": "stop_after"}


# Discovery fields added since, with the value that gives the behaviour of runs recorded
# before them.
ADDED_DISCOVERY = {"keep_backbone": False, "expand_backbone": False, "then_train": False}


def upgrade_config(config: dict) -> dict:
  """``config`` (a recorded config dict) with the fields renamed since translated to today's
  (:data:`LEGACY_SHARING`, :data:`LEGACY_DISCOVERY`) and the discovery fields added since
  given their earlier behaviour (:data:`ADDED_DISCOVERY`); a copy, the input unchanged. A
  config already in today's names, or one that is not a dict of this library's fields, comes
  back equal."""
  config = json.loads(json.dumps(config))  # a deep copy of plain JSON data
  options = config.get("model_options")
  if isinstance(options, dict) and options.get("sharing") in LEGACY_SHARING:
    options["factorise"], options["tie"] = LEGACY_SHARING[options.pop("sharing")]
  old = [name for name in LEGACY_DISCOVERY if name in config]
  if old and not isinstance(config.get("discovery"), dict):
    config["discovery"] = {LEGACY_DISCOVERY[name]: config.pop(name) for name in old}
  if isinstance(config.get("discovery"), dict):
    for name, value in ADDED_DISCOVERY.items():
      config["discovery"].setdefault(name, value)
  return config


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

