"""Grids of training runs: launch, resume, shard and tabulate.

  python -m experiments.grid list
  python -m experiments.grid run   --grid=table1 --root=runs [--seeds=0,1,2] [--rows=rotated_*]
                                   [--shard=0/4] [--set num_epochs=1 ...] [--dry-run] [--quiet]
  python -m experiments.grid table --grid=table1 --root=runs [--format=markdown|csv]

``run`` expands a grid (:mod:`experiments.paper_tables`) into one run per row and seed, with
workdir ``<root>/<grid>/<row>/seed<k>``, and trains them one after another, each as a
subprocess ``python -m ds_symmetry.main --config=<file>:<variant> --workdir=<dir>
--config.<key>=<value> ... --config.seed=<k>`` (from the repository root), so a crash or an
out-of-memory error fails one run, not the grid. Its output goes to ``<workdir>.log`` (and to
the terminal unless ``--quiet``).

Before anything trains, every run's config is resolved exactly as ``ds_symmetry.main`` would
(the same config file, variant and overrides) and validated, and compared with what its
workdir already holds:

  new       no workdir yet: trains.
  partial   started, no results.json: trains; the trainer resumes from its last checkpoint.
            Without one (a clone: checkpoints are not committed) it starts over from step 0,
            and the status says so.
  done      results.json with the same config: skipped. Fields that do not change the math
            (data_dir, logging, checkpoints, figures) may differ.
  extend    results.json, but num_epochs / num_train_steps differ: trains (the trainer resumes
            and runs the extra steps, or just rewrites the summary; without a checkpoint it
            starts over, as for partial).
  conflict  the workdir holds a run with another config (learning rate, model, ...): not run,
            reported as failed (use another --root, or delete that workdir).
  diverged  results.json says the run diverged: reported as failed, not retried (the same
            config diverges again); ``table`` shows it as diverged, never as a result.
  locked    another grid process holds ``<workdir>.lock``, or a trainer started by hand holds
            ``<workdir>/workdir.lock`` (``ds_symmetry.workdir_lock``): skipped. A lock left by
            a killed process on this host is taken over with a warning; one from another host
            must be deleted by hand.

A failed run is reported and the grid goes on; the exit status is 1 if any run failed.
Ctrl-C or SIGTERM stops the running child (its checkpoints stay; the next ``run`` resumes it)
and releases its lock.
``--shard=i/n`` keeps runs i, i+n, i+2n, ... of the seed-major order (every row's seed 0
first), so n machines sharing one root (or copying their shards into one) split a grid evenly.

``table`` (:mod:`experiments.tables`) aggregates the done runs per row (mean ± sample std over
seeds) beside the paper's number, lists missing / partial / running seeds, and marks with †
the runs whose recorded config differs from the grid's (e.g. made with ``--set num_epochs=1``)
in anything but logging, checkpointing and data location.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from typing import Any, Iterable, Mapping, Sequence, TextIO

from ds_symmetry import run_files, workdir_lock
from experiments import tables
from experiments.paper_tables import GRIDS
from experiments.spec import REPO_ROOT, Grid, Row, Run, format_value, run_path

RUNNING_STATUSES = ("new", "partial", "extend")


# --------------------------------------------------------------------------------------------
# Parsing and expansion
# --------------------------------------------------------------------------------------------
def get_grid(name: str) -> Grid:
  if name not in GRIDS:
    raise ValueError(f"grid: {name!r} is not accepted; expected one of {sorted(GRIDS)}")
  return GRIDS[name]


def parse_seeds(text: str | None) -> tuple[int, ...] | None:
  """``"0,1,2"`` or ``"0-4"`` (inclusive) -> seeds; None/"" -> None (the grid's)."""
  if not text:
    return None
  seeds: list[int] = []
  for part in text.split(","):
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
    if not match:
      raise ValueError(f"seeds: {text!r} is not accepted; expected comma-separated ints >= 0 "
                       f"or ranges, e.g. '0,1,2' or '0-4'")
    low, high = int(match.group(1)), int(match.group(2) or match.group(1))
    seeds.extend(range(low, high + 1))
  if not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f"seeds: {text!r} is not accepted; expected distinct seeds")
  return tuple(seeds)


def parse_sets(items: Iterable[str] | None) -> dict[str, str]:
  """``["num_epochs=1", "model_options.channels=8"]`` -> dict (values kept as text)."""
  out: dict[str, str] = {}
  for item in items or ():
    key, sep, value = item.partition("=")
    key = key.strip()
    if key.startswith("config."):
      key = key[len("config."):]
    if not sep or not key or any(c.isspace() for c in key):
      raise ValueError(f"--set: {item!r} is not accepted; expected key=value, e.g. "
                       f"num_epochs=1 or model_options.channels=8")
    if key == "seed":
      raise ValueError("--set: 'seed' is not accepted; use --seeds=0,1,2")
    out[key] = value
  return out


def parse_shard(text: str | None) -> tuple[int, int] | None:
  """``"i/n"`` (0 <= i < n) -> (i, n); None/"" -> None."""
  if not text:
    return None
  try:
    index, count = (int(x) for x in text.split("/"))
  except ValueError:
    index, count = -1, 0
  if count < 1 or not 0 <= index < count:
    raise ValueError(f"shard: {text!r} is not accepted; expected i/n with 0 <= i < n, e.g. 0/4")
  return index, count


def select_rows(grid: Grid, patterns: str | None) -> list[Row]:
  """Rows whose name matches any of the comma-separated glob ``patterns`` (all when None)."""
  if not patterns:
    return list(grid.rows)
  globs = [p.strip() for p in patterns.split(",") if p.strip()]
  rows = [row for row in grid.rows if any(fnmatch.fnmatchcase(row.name, g) for g in globs)]
  unmatched = [g for g in globs if not any(fnmatch.fnmatchcase(r.name, g) for r in grid.rows)]
  if unmatched:
    raise ValueError(f"rows: {unmatched} match no row of grid {grid.name!r}; rows: "
                     f"{[row.name for row in grid.rows]}")
  return rows


def expand(grid: Grid, root: str, seeds: Sequence[int] | None = None,
           sets: Mapping[str, Any] | None = None, rows: Sequence[Row] | None = None,
           shard: tuple[int, int] | None = None) -> list[Run]:
  """The grid's runs in seed-major order (all rows for the first seed, then the next ...).

  Args:
    grid: the grid.
    root: runs go to ``<root>/<grid.name>/<row.name>/seed<k>``.
    seeds: None for ``grid.seeds``.
    sets: overrides applied to every row (they replace a row's own value of the same key).
    rows: a subset of ``grid.rows`` (None: all).
    shard: ``(i, n)``: keep runs ``i, i+n, ...`` of the full (filtered) order.
  """
  root = os.path.abspath(root)
  seeds = tuple(grid.seeds if seeds is None else seeds)
  rows = list(grid.rows if rows is None else rows)
  runs = []
  for seed in seeds:
    for row in rows:
      overrides = {**dict(row.overrides), **dict(sets or {})}
      runs.append(Run(grid.name, row, seed, run_path(root, grid.name, row.name, seed),
                      overrides))
  if shard is not None:
    index, count = shard
    runs = runs[index::count]
  return runs


def command(run: Run, python: str | None = None) -> list[str]:
  """The ``ds_symmetry.main`` command line of a run (to be started from the repo root)."""
  return ([python or sys.executable, "-m", "ds_symmetry.main", f"--config={run.row.config}",
           f"--workdir={run.workdir}"]
          + [f"--config.{key}={format_value(value)}" for key, value in run.overrides.items()]
          + [f"--config.seed={run.seed}"])


# --------------------------------------------------------------------------------------------
# Config resolution and status
# --------------------------------------------------------------------------------------------
def resolve_config(run: Run) -> dict:
  """The run's config as the trainer will record it (``config.json``), validated.

  Parses the same ``--config`` / ``--config.*`` flags as ``ds_symmetry.main`` with
  ``ml_collections.config_flags``, so types and errors are exactly the trainer's.
  """
  import ds_symmetry  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  from absl import flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  from ds_symmetry.train.config import validate_config  # pylint: disable=import-outside-toplevel

  file, _, variant = run.row.config.partition(":")
  argv = ["grid", f"--config={os.path.join(REPO_ROOT, file)}:{variant}"] + [
      arg for arg in command(run)[3:] if arg.startswith("--config.")]
  values = flags.FlagValues()
  try:
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True,
                                    sys_argv=argv)
    with warnings.catch_warnings():  # ml_collections loads config files with load_module()
      warnings.simplefilter("ignore", DeprecationWarning)
      values(argv)
    config = values.config
    validate_config(config)
  except Exception as error:  # pylint: disable=broad-except
    raise ValueError(f"{run.key}: invalid config ({run.row.config} with "
                     f"{' '.join(argv[2:])}): {error}") from None
  return run_files.config_as_dict(config)


def _lock_is_stale(holder: dict, lock_path: str | None = None) -> bool:
  return workdir_lock.is_stale(holder, lock_path)


def _live_holder(lock_path: str) -> dict | None:
  """The holder of a lock file unless it is stale (its process of this host is gone)."""
  holder = workdir_lock.read_holder(lock_path)
  return None if holder is None or _lock_is_stale(holder, lock_path) else holder


def _starts_over(workdir: str) -> str:
  """What a resumed run's status adds when the workdir holds no checkpoint (checkpoints are not
  committed with results, so a clone has none): the trainer then starts from step 0 and
  replaces the run's earlier outputs."""
  if run_files.checkpoint_steps(workdir):
    return ""
  return "; no checkpoint here: starts over from step 0"


def _dotted(config: dict, key: str):
  """``config``'s value of a dotted field (``discovery.stop_after``); None if it has none."""
  for part in key.split("."):
    config = config.get(part) if isinstance(config, dict) else None
  return config


def run_status(run: Run, config: dict | None, check_lock: bool = True) -> tuple[str, str]:
  """``(status, detail)`` of a run; see the module docstring for the statuses.

  ``config`` is the resolved config (:func:`resolve_config`); None skips the comparison.
  """
  if check_lock:  # the grid's lock, then the trainer's own (a run started by hand)
    for lock_path in (run.lock_path, run_files.path(run.workdir, run_files.LOCK)):
      holder = _live_holder(lock_path)
      if holder is not None:
        return "locked", f"held by {workdir_lock.describe(holder)} ({lock_path})"
  # pylint: disable-next=import-outside-toplevel
  from ds_symmetry.train.config import (LENGTH_FIELDS, config_differences,
                                       workdir_config_differences)
  results = run_files.read_results(run.workdir, strict=False)
  if results is not None and results.get("status") == "diverged":
    # Rerunning the same config diverges again (training is deterministic): not retried.
    return "diverged", (f"diverged at step {results.get('diverged_at_step')}: "
                        f"{results.get('divergence')}; last finite checkpoint at step "
                        f"{results.get('last_checkpoint_step')}; change the row's config (e.g. "
                        f"a smaller learning_rate) under another --root, or delete the workdir")
  if results is not None:
    if config is None:
      return "done", ""
    # A finished run is not stale for fields added to the config since: nothing resumes it.
    harmless, breaking = config_differences(results.get("config") or {}, config,
                                            recorded_only=True)
    if breaking:
      return "conflict", f"results.json has another config: fields {breaking} differ"
    longer = [key for key in harmless if key in LENGTH_FIELDS]
    if longer:
      return "extend", ", ".join(
          f"{key} {_dotted(results['config'], key)} -> {_dotted(config, key)}"
          for key in longer) + _starts_over(run.workdir)
    return "done", (f"{100 * results['final_test_accuracy']:.2f}%"
                    if isinstance(results.get("final_test_accuracy"), float) else "")
  saved = run_files.read_config(run.workdir, strict=False)
  if saved is not None:
    if config is not None:  # judged exactly as the trainer will judge it when resuming
      _, breaking = workdir_config_differences(run.workdir, saved, config)
      if breaking:
        return "conflict", f"config.json has another config: fields {breaking} differ"
    return "partial", tables.run_progress(run.workdir) + _starts_over(run.workdir)
  if os.path.isdir(run_files.path(run.workdir, run_files.CHECKPOINTS)):
    return "partial", "checkpoints only"
  return "new", ""


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
_HELD_LOCKS: dict[str, workdir_lock.WorkdirLock] = {}


def _acquire_lock(run: Run) -> bool:
  """Takes ``<workdir>.lock`` (``ds_symmetry.workdir_lock``; a stale one is taken over with a
  warning); False if a live process holds it."""
  os.makedirs(os.path.dirname(run.lock_path), exist_ok=True)
  lock = workdir_lock.WorkdirLock(run.lock_path, what=f"run {run.key}")
  try:
    lock.acquire()
  except workdir_lock.WorkdirLocked:
    return False
  _HELD_LOCKS[run.lock_path] = lock
  return True


def _release_lock(run: Run) -> None:
  lock = _HELD_LOCKS.pop(run.lock_path, None)
  if lock is not None:
    lock.release()


def execute(run: Run, config: dict, quiet: bool = False, out: TextIO = sys.stdout,
            python: str | None = None) -> tuple[bool, str]:
  """Trains one run as a subprocess (holding its lock); ``(ok, detail)``.

  Success means ``results.json`` now holds this config; the exit status alone is not trusted
  (``ds_symmetry.main`` prints a report after writing results and may fail there).
  """
  if not _acquire_lock(run):
    return False, f"locked by another process ({run.lock_path})"
  status, detail = run_status(run, config, check_lock=False)
  if status not in RUNNING_STATUSES:  # another process finished it meanwhile
    _release_lock(run)
    return status == "done", f"{status} meanwhile, not run again ({detail})"
  cmd = command(run, python)
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  start = time.time()
  process = None
  try:
    with open(run.log_path, "a", encoding="utf-8") as log:
      log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {socket.gethostname()}: "
                f"{shlex.join(cmd)}\n")
      log.flush()
      with _sigint_not_ignored():
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
      for line in process.stdout:
        log.write(line)
        if not quiet:
          out.write(line)
          out.flush()
      returncode = process.wait()
      log.write(f"=== exit status {returncode} after {time.time() - start:.1f} s\n")
  except BaseException:  # Ctrl-C or SIGTERM: stop the child too (it resumes next time)
    if process is not None:
      _stop(process)
    message = f"=== interrupted after {time.time() - start:.1f} s; `run` resumes it\n"
    with open(run.log_path, "a", encoding="utf-8") as log:
      log.write(message)
    out.write(f"{run.key}: {message[4:]}")
    raise
  finally:
    _release_lock(run)
  status, detail = run_status(run, config)
  if status == "done":
    note = "" if returncode == 0 else (f" (ds_symmetry.main exited {returncode} after writing "
                                       f"results.json; see {run.log_path})")
    return True, f"{detail} in {tables.format_duration(time.time() - start)}{note}"
  if status == "diverged":
    return False, f"{detail}; log: {run.log_path}"
  return False, (f"exit status {returncode}, no matching results.json ({status}); log: "
                 f"{run.log_path}\n" + _tail(run.log_path))


@contextlib.contextmanager
def _sigint_not_ignored():
  """While starting a child: an ignored SIGINT (a background job of a non-interactive shell)
  would be inherited through exec, and the trainer could then not be stopped cleanly. A
  Python-level handler is reset to the default by exec, so the child handles SIGINT again."""
  if (threading.current_thread() is threading.main_thread()
      and signal.getsignal(signal.SIGINT) == signal.SIG_IGN):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
      yield
    finally:
      signal.signal(signal.SIGINT, signal.SIG_IGN)
  else:
    yield


def _stop(process: subprocess.Popen) -> None:
  """SIGINT (the trainer stops cleanly), then SIGTERM, then SIGKILL."""
  for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, None)):
    if process.poll() is not None:
      return
    process.send_signal(sig)
    try:
      process.wait(timeout=wait)
      return
    except subprocess.TimeoutExpired:
      pass


def _raise_on_sigterm(signum, frame):  # pylint: disable=unused-argument
  raise SystemExit(128 + signum)


def _tail(path: str, lines: int = 15) -> str:
  try:
    with open(path, encoding="utf-8", errors="replace") as file:
      text = file.readlines()[-lines:]
  except OSError:
    return ""
  return "".join("    | " + line for line in text)


def run_grid(runs: Sequence[Run], dry_run: bool = False, quiet: bool = False,
             out: TextIO = sys.stdout, python: str | None = None) -> int:
  """Resolves and checks every run, then trains those not done; returns the exit status."""
  configs = {}
  errors = []
  bad_rows = set()
  for run in runs:
    if run.row.name in bad_rows:
      continue  # one error per row is enough
    try:
      configs[run.key] = resolve_config(run)
    except ValueError as error:
      errors.append(str(error))
      bad_rows.add(run.row.name)
  if errors:
    out.write("error: nothing was run; invalid configs:\n" + "\n".join(errors) + "\n")
    return 2
  statuses = {run.key: run_status(run, configs[run.key]) for run in runs}
  if dry_run:
    out.write(f"# {len(runs)} runs; commands run from {REPO_ROOT}\n")
    for run in runs:
      status, detail = statuses[run.key]
      if status in RUNNING_STATUSES:
        out.write(f"# {run.key}: {status}{' (' + detail + ')' if detail else ''}\n")
        out.write(shlex.join(command(run, python)) + "\n")
      else:
        out.write(f"# {run.key}: {status}, not run{' (' + detail + ')' if detail else ''}\n")
    return 0

  counts = {"done": 0, "skipped": 0, "failed": 0}
  failures = []
  for index, run in enumerate(runs, 1):
    status, detail = run_status(run, configs[run.key])  # fresh: another shard may have run it
    prefix = f"[{index}/{len(runs)}] {run.key}"
    if status == "done":
      counts["skipped"] += 1
      out.write(f"{prefix}: done, skipped{' (' + detail + ')' if detail else ''}\n")
      continue
    if status in ("locked", "conflict", "diverged"):
      key = "skipped" if status == "locked" else "failed"
      counts[key] += 1
      if status != "locked":
        failures.append(f"{run.key}: {detail}")
      out.write(f"{prefix}: {status}, not run ({detail})\n")
      continue
    out.write(f"{prefix}: {status}{' (' + detail + ')' if detail else ''}, training; "
              f"log {run.log_path}\n")
    out.flush()
    ok, detail = execute(run, configs[run.key], quiet=quiet, out=out, python=python)
    counts["done" if ok else "failed"] += 1
    if not ok:
      failures.append(f"{run.key}: {detail}")
    out.write(f"{prefix}: {'finished' if ok else 'FAILED'}: {detail}\n")
    out.flush()
  out.write(f"grid: {counts['done']} trained, {counts['skipped']} skipped, "
            f"{counts['failed']} failed of {len(runs)} runs\n")
  for failure in failures:
    out.write(f"  failed: {failure}\n")
  return 1 if failures else 0


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m experiments.grid",
                                   description="Run and tabulate grids of training runs.")
  commands = parser.add_subparsers(dest="command", required=True)

  def common(sub):
    sub.add_argument("--grid", required=True, help=f"one of {sorted(GRIDS)}")
    sub.add_argument("--root", default="runs",
                     help="runs go to ROOT/<grid>/<row>/seed<k> (default: runs)")
    sub.add_argument("--seeds", default=None, help="e.g. 0,1,2 or 0-4 (default: the grid's)")
    sub.add_argument("--rows", default=None, help="comma-separated globs of row names")

  run = commands.add_parser("run", help="train every run not done yet")
  common(run)
  run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run (repeatable), e.g. num_epochs=1")
  run.add_argument("--shard", default=None, metavar="I/N", help="run only shard I of N")
  run.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  run.add_argument("--quiet", action="store_true", help="training output to the logs only")
  run.add_argument("--python", default=None, help="interpreter for the runs "
                   "(default: this one)")

  table = commands.add_parser("table", help="aggregate results.json files into a table")
  common(table)
  table.add_argument("--format", default="markdown", choices=("markdown", "csv"))
  table.add_argument("--no-check-config", dest="check_config", action="store_false",
                     help="do not compare each run's recorded config with the grid's "
                     "(runs made with --set are marked † otherwise)")

  commands.add_parser("list", help="list grids and their rows")
  return parser


def _expected_config(grid: Grid, root: str):
  """``(row, seed) -> config`` as ``run`` (without ``--set``) would train it."""
  def expected(row: Row, seed: int) -> dict:
    return resolve_config(expand(grid, root, seeds=(seed,), rows=(row,))[0])
  return expected


def _list(out: TextIO) -> None:
  for grid in GRIDS.values():
    out.write(f"{grid.name}: {grid.title} ({len(grid.rows)} rows × seeds "
              f"{','.join(map(str, grid.seeds))})\n")
    for row in grid.rows:
      overrides = " ".join(f"{k}={format_value(v)}" for k, v in row.overrides.items())
      paper = f"paper {row.paper.text()}" if row.paper else "no paper number"
      out.write(f"  {row.name:<24} {row.config:<40} {overrides + '  ' if overrides else ''}"
                f"({paper})\n")


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
  args = _parser().parse_args(argv)
  if args.command == "list":
    _list(out)
    return 0
  try:
    grid = get_grid(args.grid)
    seeds = parse_seeds(args.seeds)
    rows = select_rows(grid, args.rows)
    if args.command == "table":
      results = tables.collect(grid, args.root, seeds, rows, expected_config=_expected_config(
          grid, args.root) if args.check_config else None)
      out.write(tables.format_table(grid, results, args.root, args.format).rstrip("\n") + "\n")
      return 0
    runs = expand(grid, args.root, seeds, parse_sets(args.sets), rows, parse_shard(args.shard))
  except ValueError as error:
    out.write(f"error: {error}\n")
    return 2
  if args.dry_run or threading.current_thread() is not threading.main_thread():
    return run_grid(runs, dry_run=args.dry_run, quiet=args.quiet, out=out, python=args.python)
  previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)  # stop the child, drop the lock
  try:
    return run_grid(runs, quiet=args.quiet, out=out, python=args.python)
  finally:
    signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
  sys.exit(main())
