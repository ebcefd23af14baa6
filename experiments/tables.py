"""Tabulating a grid: read every run's ``results.json``, aggregate over seeds, print beside the
paper's numbers (markdown or CSV).

A run (``<root>/<grid>/<row>/seed<k>``) is *done* when its ``results.json`` exists and says it
finished, *diverged* when it says it diverged, *running* when a live process holds its grid or
trainer lock (a lock whose process died is ignored), *partial* when it has started (a
``config.json``, metrics or checkpoints) but has no results, and *missing* otherwise. Only done runs enter the
statistics; the others are counted in the ``seeds`` column and listed under the table.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
from typing import Callable, Sequence

from ds_symmetry import run_files, workdir_lock
from experiments.spec import Grid, Row, run_path


@dataclasses.dataclass
class SeedResult:
  """What one run's directory holds.

  Attributes:
    seed: the seed.
    workdir: the run's directory.
    status: ``"done"``, ``"diverged"``, ``"running"``, ``"partial"`` or ``"missing"``.
    results: the parsed ``results.json`` (done runs), else None.
    progress: for partial/running runs, e.g. ``"epoch 37/100"`` (else "").
    lift: ``(group or "none", distance, best candidate)`` of the learned lifting layer, or None.
    wall_time_s: total training wall time over every invocation (see :func:`total_wall_time`).
    deviations: config fields in which the run differs from its row (e.g. ``"num_epochs=1
      (grid: 100)"``), ignoring logging/checkpoint/data-location fields and fields the run
      did not record (see :func:`config_deviations`); "" when it matches or was not checked.
  """
  seed: int
  workdir: str
  status: str
  results: dict | None = None
  progress: str = ""
  lift: tuple[str, float, str] | None = None
  wall_time_s: float | None = None
  deviations: str = ""


@dataclasses.dataclass
class RowResult:
  row: Row
  seeds: list[SeedResult]

  def done(self) -> list[SeedResult]:
    return [s for s in self.seeds if s.status == "done"]

  def values(self, key: str, scale: float = 1.0) -> list[float]:
    out = []
    for seed in self.done():
      value = seed.results.get(key)
      if isinstance(value, (int, float)) and math.isfinite(value):
        out.append(scale * float(value))
    return out


# --------------------------------------------------------------------------------------------
# Reading runs
# --------------------------------------------------------------------------------------------
def markdown_rows(header: Sequence[str], rows) -> str:
  """A markdown table: ``header`` and ``rows`` (each a sequence of cell strings)."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def read_json(path: str) -> dict | None:
  """A JSON file's content; None if it is missing or unreadable (a lock file, a cache)."""
  return run_files.read_json(path, strict=False)


def eval_records(workdir: str) -> list[dict]:
  """The ``"eval"`` records of ``workdir/metrics.jsonl`` (up to a line cut by a kill)."""
  return run_files.read_metrics(workdir, "eval")


def _last_eval(workdir: str) -> dict | None:
  evals = eval_records(workdir)
  return evals[-1] if evals else None


def total_wall_time(workdir: str, results: dict) -> float | None:
  """Wall time of a finished run summed over its invocations.

  ``results.json``'s ``wall_time_s`` covers only the last invocation; a resumed run
  (``resumed_from_step``) adds, for each earlier invocation, the ``wall_s`` of its last
  evaluation in ``metrics.jsonl`` (time after an interrupted invocation's last checkpoint is
  lost anyway and not counted).
  """
  last = results.get("wall_time_s")
  if not isinstance(last, (int, float)):
    return None
  resumed = results.get("resumed_from_step")
  if not resumed:
    return float(last)
  earlier = [r["wall_s"] for r in eval_records(workdir)
             if r.get("step", 0) <= resumed and isinstance(r.get("wall_s"), (int, float))]
  total = float(last)
  for index, wall in enumerate(earlier):  # wall_s restarts at each invocation
    if index + 1 == len(earlier) or earlier[index + 1] < wall:
      total += wall
  return total


def run_progress(workdir: str) -> str:
  config = run_files.read_config(workdir, strict=False) or {}
  last = _last_eval(workdir)
  if config.get("num_train_steps", -1) > 0:
    return f"step {last['step'] if last else 0}/{config['num_train_steps']}"
  total = config.get("num_epochs", "?")
  return f"epoch {last['epoch'] if last else 0}/{total}"


def lock_holder(lock_path: str) -> dict | None:
  """The lock file's ``{"host", "pid", "started"}``, or None when there is no lock."""
  if not os.path.exists(lock_path):
    return None
  return read_json(lock_path) or {"host": "?", "pid": "?"}


def lift_summary(workdir: str, results: dict | None) -> tuple[str, float, str] | None:
  """Nearest group of the learned lifting layer: from ``stacks.npz`` (``summarize_stack``),
  else from ``results.json``'s ``learned_symmetry``; None for models without one."""
  try:
    loaded = run_files.load_stacks(workdir)
  except run_files.UnreadableRunFile:
    loaded = None
  if loaded is not None:
    stacks, meta = loaded
    layers = meta["layers"]
    lifts = sorted(name for name, info in layers.items()
                   if info.get("learned") and info.get("kind") == "lift")
    if lifts:
      from ds_symmetry.analysis import summarize_stack  # pylint: disable=import-outside-toplevel
      info = layers[lifts[0]]
      summary = summarize_stack(stacks[lifts[0]], info["kernel_size"], "lift")
      return summary["group"], summary["group_distance"], summary["best_candidate"]
  for _, summary in sorted(((results or {}).get("learned_symmetry") or {}).items()):
    if summary.get("kind") == "lift":
      distance = summary.get("group_distance")
      return (summary.get("group", "none"), float("nan") if distance is None else distance,
              summary.get("best_candidate", "none"))
  return None


def _live_lock_holder(workdir: str) -> dict | None:
  """The live holder of the grid's or the trainer's lock of ``workdir``; a lock left by a dead
  process of this host (``workdir_lock.is_stale``) does not make a run *running*."""
  for lock_path in (workdir + ".lock", run_files.path(workdir, run_files.LOCK)):
    holder = workdir_lock.read_holder(lock_path)
    if holder is not None and not workdir_lock.is_stale(holder, lock_path):
      return holder
  return None


def read_seed(workdir: str, seed: int) -> SeedResult:
  results = run_files.read_results(workdir, strict=False)
  if results is not None and results.get("status") == "diverged":
    return SeedResult(seed, workdir, "diverged", results,
                      progress=f"diverged at step {results.get('diverged_at_step')}")
  if results is not None:
    return SeedResult(seed, workdir, "done", results, lift=lift_summary(workdir, results),
                      wall_time_s=total_wall_time(workdir, results))
  holder = _live_lock_holder(workdir)
  started = os.path.isdir(workdir) and any(
      os.path.exists(os.path.join(workdir, name))
      for name in (run_files.CONFIG, run_files.METRICS, run_files.CHECKPOINTS))
  if holder is not None:
    where = f"{holder.get('host', '?')}:{holder.get('pid', '?')}"
    return SeedResult(seed, workdir, "running",
                      progress=(run_progress(workdir) + ", " if started else "") + where)
  if started:
    return SeedResult(seed, workdir, "partial", progress=run_progress(workdir))
  return SeedResult(seed, workdir, "missing")


def seeds_on_disk(grid_dir: str, rows: Sequence[Row]) -> set[int]:
  """Seeds with a ``seed<k>`` directory under any row of the grid."""
  found = set()
  for row in rows:
    row_dir = os.path.join(grid_dir, row.name)
    if os.path.isdir(row_dir):
      for name in os.listdir(row_dir):
        match = re.fullmatch(r"seed(\d+)", name)
        if match and os.path.isdir(os.path.join(row_dir, name)):
          found.add(int(match.group(1)))
  return found


def config_deviations(saved: dict, expected: dict) -> str:
  """``"num_epochs=1 (grid: 100), limit_train=2048 (grid: null)"``; "" when they match.

  Fields the saved config does not have are skipped (recorded before they existed), and so are
  the seed and the fields that do not change what a run computes
  (``ds_symmetry.train.config.BOOKKEEPING_FIELDS``: data location, logging, checkpoints).
  """
  from ds_symmetry.train.config import BOOKKEEPING_FIELDS  # pylint: disable=import-outside-toplevel
  def text(value):
    return "absent" if value is run_files.ABSENT else json.dumps(value, sort_keys=True)
  return ", ".join(f"{key}={text(old)} (grid: {text(new)})"
                   for key, old, new in run_files.diff_configs(saved, expected,
                                                               recorded_only=True)
                   if key.split(".")[0] not in BOOKKEEPING_FIELDS and key != "seed")


def collect(grid: Grid, root: str, seeds: Sequence[int] | None = None,
            rows: Sequence[Row] | None = None,
            expected_config: Callable[[Row, int], dict] | None = None) -> list[RowResult]:
  """Every row's seeds read from ``<root>/<grid>/<row>/seed<k>``.

  Args:
    grid, root: the runs live in ``<root>/<grid.name>/<row>/seed<k>``.
    seeds: None means the grid's seeds plus any other ``seed<k>`` directory found on disk.
    rows: a subset of the grid's rows (None: all).
    expected_config: ``(row, seed) -> config dict`` as the grid would run it; when given, done
      runs whose recorded config differs get :attr:`SeedResult.deviations`.
  """
  rows = list(grid.rows if rows is None else rows)
  grid_dir = os.path.join(os.path.abspath(root), grid.name)
  if seeds is None:
    seeds = sorted(set(grid.seeds) | seeds_on_disk(grid_dir, rows))
  out = []
  for row in rows:
    results = [read_seed(run_path(root, grid.name, row.name, seed), seed) for seed in seeds]
    if expected_config is not None:
      for result in results:
        if result.status == "done":
          result.deviations = config_deviations(result.results.get("config") or {},
                                                expected_config(row, result.seed))
    out.append(RowResult(row, results))
  return out


# --------------------------------------------------------------------------------------------
# Statistics and formatting
# --------------------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
  """Mean and sample std (ddof=1; None with fewer than two values)."""
  if not values:
    return None, None
  mean = sum(values) / len(values)
  if len(values) < 2:
    return mean, None
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _pm(values: Sequence[float], digits: int = 2) -> str:
  mean, std = mean_std(values)
  if mean is None:
    return "–"
  if std is None:
    return f"{mean:.{digits}f} (n=1)"
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_duration(seconds: float | None) -> str:
  if seconds is None:
    return "–"
  if seconds < 120:
    return f"{seconds:.0f} s"
  if seconds < 2 * 3600:
    return f"{seconds / 60:.1f} min"
  return f"{seconds / 3600:.1f} h"


def _params(result: RowResult) -> tuple[int | None, int | None]:
  for seed in result.done():
    parameters = seed.results.get("parameters") or {}
    if "free" in parameters:
      return parameters["free"], parameters.get("representation", 0)
  return None, None


def _params_text(result: RowResult) -> str:
  free, representation = _params(result)
  if free is None:
    return "–"
  return f"{free:,}" + (f" (+{representation:,})" if representation else "")


def _lift_stats(result: RowResult) -> tuple[str, float | None, float | None]:
  """("C4 2/3, none(C4) 1/3", mean distance, std distance) over done seeds with a lift layer."""
  lifts = [s.lift for s in result.done() if s.lift is not None]
  if not lifts:
    return "", None, None
  counts: dict[str, int] = {}
  for group, _, candidate in lifts:
    name = group if group != "none" else f"none({candidate})"
    counts[name] = counts.get(name, 0) + 1
  text = ", ".join(f"{name} {count}/{len(lifts)}" for name, count in
                   sorted(counts.items(), key=lambda item: -item[1]))
  distances = [d for _, d, _ in lifts if d is not None and math.isfinite(d)]
  mean, std = mean_std(distances)
  return text, mean, std


def _lift_text(result: RowResult) -> str:
  text, mean, std = _lift_stats(result)
  if not text:
    return "–"
  if mean is None:
    return text
  return f"{text}; d={mean:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def _seeds_text(result: RowResult) -> str:
  done = len(result.done())
  text = f"{done}/{len(result.seeds)}"
  extra = [f"{sum(s.status == status for s in result.seeds)} {status}"
           for status in ("running", "partial", "diverged")
           if any(s.status == status for s in result.seeds)]
  return (text + (f" ({', '.join(extra)})" if extra else "")
          + ("" if done == len(result.seeds) else " *")
          + (" †" if any(s.deviations for s in result.seeds) else ""))


def _deviation_notes(result: RowResult) -> list[str]:
  by_text: dict[str, list[int]] = {}
  for seed in result.seeds:
    if seed.deviations:
      by_text.setdefault(seed.deviations, []).append(seed.seed)
  return [f"`{result.row.name}` seed{'s' if len(seeds) > 1 else ''} "
          f"{', '.join(map(str, seeds))} ran with {text}" for text, seeds in by_text.items()]


def _walls(result: RowResult) -> list[float]:
  return [s.wall_time_s for s in result.done() if s.wall_time_s is not None]


def _delta(result: RowResult) -> str:
  mean, _ = mean_std(result.values("final_test_accuracy", 100))
  if mean is None or result.row.paper is None:
    return "–"
  return f"{mean - result.row.paper.accuracy:+.2f}"


MARKDOWN_COLUMNS = ("row", "setting", "model", "seeds", "final acc", "paper", "Δ", "best acc",
                    "params free (+repr)", "paper params", "wall time", "lifting layer: group; d")


def format_markdown(grid: Grid, results: Sequence[RowResult], root: str) -> str:
  """The table with footnotes: incomplete runs, row notes, grid notes."""
  lines = [f"### {grid.title}", "",
           f"runs: `{os.path.join(os.path.abspath(root), grid.name)}`; accuracy in %, mean ± "
           f"std over done seeds; Δ = ours − paper (means)", ""]
  lines.append("| " + " | ".join(MARKDOWN_COLUMNS) + " |")
  lines.append("|" + "|".join("---" for _ in MARKDOWN_COLUMNS) + "|")
  for result in results:
    row = result.row
    cells = [
        f"`{row.name}`", row.setting or "–", row.label, _seeds_text(result),
        _pm(result.values("final_test_accuracy", 100)),
        row.paper.text() if row.paper else "–", _delta(result),
        _pm(result.values("best_test_accuracy", 100)), _params_text(result),
        (row.paper.params or "–") if row.paper else "–",
        format_duration(mean_std(_walls(result))[0]), _lift_text(result)]
    lines.append("| " + " | ".join(cells) + " |")
  footnotes = []
  for result in results:
    missing = [str(s.seed) for s in result.seeds if s.status == "missing"]
    if missing:
      footnotes.append(f"missing: `{result.row.name}` seed{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(missing)} (not started)")
    for seed in result.seeds:
      if seed.status == "partial":
        footnotes.append(f"incomplete: `{result.row.name}` seed {seed.seed} ({seed.progress}; "
                         f"`run` resumes it)")
      elif seed.status == "running":
        footnotes.append(f"running: `{result.row.name}` seed {seed.seed} ({seed.progress})")
      elif seed.status == "diverged":
        footnotes.append(f"diverged: `{result.row.name}` seed {seed.seed} ({seed.progress}; "
                         f"not in the mean)")
  if footnotes:
    lines += ["", "\\* not every seed is done:"] + [f"- {note}" for note in footnotes]
  deviations = [note for result in results for note in _deviation_notes(result)]
  if deviations:
    lines += ["", "† runs whose config differs from the grid's (not the paper's setting):"] + [
        f"- {note}" for note in deviations]
  notes = [f"`{r.row.name}`: {r.row.note}" for r in results if r.row.note] + list(grid.notes)
  notes.append("lifting layer: nearest group of the learned lifting stack, counted over seeds "
               "(none(X): no group within the threshold, X the closest), and its distance "
               "‖R − P‖_F/√d (mean ± std), from stacks.npz via "
               "`ds_symmetry.analysis.summarize_stack`")
  lines += ["", "Notes:"] + [f"- {note}" for note in notes]
  return "\n".join(lines)


CSV_COLUMNS = ("grid", "row", "setting", "model", "config", "overrides", "seeds",
               "seeds_done", "seeds_running", "seeds_partial", "final_acc_mean", "final_acc_std",
               "paper_acc", "paper_std_printed", "delta", "best_acc_mean", "best_acc_std",
               "params_free", "params_representation", "paper_params", "wall_time_s_mean",
               "images_per_s_mean", "lift_groups", "lift_distance_mean", "lift_distance_std",
               "final_acc_per_seed", "deviations")


def _num(value: float | None, digits: int = 4) -> str:
  return "" if value is None else f"{value:.{digits}f}"


def format_csv(grid: Grid, results: Sequence[RowResult]) -> str:
  """One line per row with raw numbers (accuracies in %, empty when unknown)."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(CSV_COLUMNS)
  for result in results:
    row = result.row
    final_mean, final_std = mean_std(result.values("final_test_accuracy", 100))
    best_mean, best_std = mean_std(result.values("best_test_accuracy", 100))
    free, representation = _params(result)
    lift_text, lift_mean, lift_std = _lift_stats(result)
    per_seed = ";".join(
        f"{s.seed}:{100 * s.results['final_test_accuracy']:.2f}" for s in result.done()
        if isinstance(s.results.get("final_test_accuracy"), (int, float)))
    writer.writerow([
        grid.name, row.name, row.setting, row.label, row.config,
        json.dumps(dict(row.overrides), sort_keys=True) if row.overrides else "",
        " ".join(str(s.seed) for s in result.seeds), len(result.done()),
        sum(s.status == "running" for s in result.seeds),
        sum(s.status == "partial" for s in result.seeds),
        _num(final_mean), _num(final_std),
        _num(row.paper.accuracy, 2) if row.paper else "", row.paper.printed if row.paper else "",
        _num(final_mean - row.paper.accuracy) if (row.paper and final_mean is not None) else "",
        _num(best_mean), _num(best_std), "" if free is None else free,
        "" if representation is None else representation,
        row.paper.params if row.paper else "",
        _num(mean_std(_walls(result))[0], 1),
        _num(mean_std(result.values("images_per_second"))[0], 1),
        lift_text, _num(lift_mean), _num(lift_std), per_seed,
        "; ".join(_deviation_notes(result))])
  return buffer.getvalue()


def format_table(grid: Grid, results: Sequence[RowResult], root: str,
                 fmt: str = "markdown") -> str:
  if fmt == "markdown":
    return format_markdown(grid, results, root)
  if fmt == "csv":
    return format_csv(grid, results)
  raise ValueError(f"format: {fmt!r} is not accepted; expected 'markdown' or 'csv'")



# --------------------------------------------------------------------------------------------
# Generated blocks in documents
# --------------------------------------------------------------------------------------------
def markers(marker: str) -> tuple[str, str]:
  """``("<!-- <marker>:start -->", "<!-- <marker>:end -->")``: the lines around a generated
  block of a markdown page."""
  return f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"


def _split_marked(path: str, marker: str) -> tuple[str, str, str]:
  start, end = markers(marker)
  with open(path, encoding="utf-8") as handle:
    content = handle.read()
  if content.count(start) != 1 or content.count(end) != 1:
    raise ValueError(f"{path}: expected one {start} and one {end} marker")
  head, rest = content.split(start)
  body, tail = rest.split(end)
  return head, body, tail


def read_between(path: str, marker: str) -> str:
  """What lies between the ``marker`` block's start and end lines of ``path`` (without the
  newline after the start line), as :func:`write_into` writes it."""
  return _split_marked(path, marker)[1].removeprefix("\n")


def write_into(path: str, marker: str, text: str) -> None:
  """Replaces what lies between ``<!-- <marker>:start -->`` and ``<!-- <marker>:end -->`` in
  ``path`` by ``text`` (how generated tables go into the README and the docs, never typed);
  a file without exactly one of each marker raises ``ValueError`` and is left as it was."""
  head, _, tail = _split_marked(path, marker)
  start, end = markers(marker)
  with open(path, "w", encoding="utf-8") as handle:
    handle.write(f"{head}{start}\n{text}{end}{tail}")


# --------------------------------------------------------------------------------------------
# Per-run summaries (``summary.json`` of a study): each distinct provenance stored once
# --------------------------------------------------------------------------------------------
def write_records(path: str, records: Sequence[dict]) -> None:
  """Writes per-run ``records`` (dicts, each with its ``provenance``) as
  ``{"provenances": [distinct provenances], "records": [record with "provenance": index]}``:
  a grid's runs share one or two machines, so each provenance is stored once, not per run."""
  provenances, index, stored = [], {}, []
  for record in records:
    key = json.dumps(record.get("provenance"), sort_keys=True)
    if key not in index:
      index[key] = len(provenances)
      provenances.append(record.get("provenance"))
    stored.append(dict(record, provenance=index[key]))
  with open(path, "w", encoding="utf-8") as handle:
    json.dump({"provenances": provenances, "records": stored}, handle, indent=1,
              sort_keys=True)


def read_records(path: str) -> list[dict]:
  """The records :func:`write_records` wrote, each with its provenance back in place; a plain
  list of records (a summary written before provenances were stored once) reads as it is."""
  with open(path, encoding="utf-8") as handle:
    data = json.load(handle)
  if isinstance(data, list):
    return data
  provenances = data["provenances"]
  return [dict(record, provenance=provenances[record["provenance"]])
          for record in data["records"]]
