"""Runs benchmarks and prints their tables.

Usage::

  python -m benchmarks.run                 # every benchmark, full size
  python -m benchmarks.run sinkhorn --quick
  python -m benchmarks.run --list
  python -m benchmarks.run compute_dtype --save results/benchmarks

Each benchmark module in ``BENCHMARKS`` exposes ``run(quick: bool) -> list[dict]`` and an
optional ``COLUMNS`` list and ``TITLE`` string. ``--save DIR`` also writes each benchmark's
table as ``DIR/<name>.json`` (:func:`save`): its rows, the command, and the provenance of the
machine that measured it (``ds_symmetry.provenance.collect``: CPU model and flags, package
versions, commit, switches), so the documentation's tables come from it
(``python -m experiments.doc_tables``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

import ds_symmetry  # noqa: F401  (fast CPU convolution flag, before jax starts)
from benchmarks import common

BENCHMARKS = {
    "augmentation": "benchmarks.augmentation",
    "sinkhorn": "benchmarks.sinkhorn",
    "models": "benchmarks.models",
    "layer_scaling": "benchmarks.layer_scaling",
    "training": "benchmarks.training",
    "profile": "benchmarks.profile_step",
    "conv_limit": "benchmarks.conv_limit",
    "conv_paths": "benchmarks.conv_paths",
    "step_cost": "benchmarks.step_cost",
    "compute_dtype": "benchmarks.compute_dtype",
    "time_to_group": "benchmarks.time_to_group",
    "xla_cpu_flags": "benchmarks.xla_cpu_flags",
}


def command(name: str, quick: bool) -> str:
  """The command line that reruns benchmark ``name``, with the reference checkout's variable
  when it is set (``benchmarks.reference``: the reference is then timed, not quoted)."""
  from benchmarks.reference import ENV  # pylint: disable=import-outside-toplevel
  prefix = f"{ENV}=<checkout> " if os.environ.get(ENV) else ""
  return f"{prefix}python -m benchmarks.run {name}" + (" --quick" if quick else "")


def save(directory: str, name: str, module, rows: list[dict], quick: bool) -> str:
  """Writes ``directory/<name>.json``: ``{"benchmark", "title", "columns", "rows", "quick",
  "command", "provenance"}``; returns its path."""
  from ds_symmetry import provenance  # pylint: disable=import-outside-toplevel
  os.makedirs(directory, exist_ok=True)
  record = {"benchmark": name, "title": getattr(module, "TITLE", name),
            "columns": list(getattr(module, "COLUMNS", None) or (rows[0] if rows else [])),
            "rows": rows, "quick": quick,
            "command": command(name, quick),
            "provenance": provenance.collect()}
  path = os.path.join(directory, f"{name}.json")
  with open(path + ".tmp", "w", encoding="utf-8") as handle:
    json.dump(record, handle, indent=1, sort_keys=True, default=float)
  os.replace(path + ".tmp", path)
  return path


def markdown_table(record: dict) -> str:
  """A saved benchmark (:func:`save`) as a markdown table, floats to 4 significant digits."""
  from experiments.tables import markdown_rows  # pylint: disable=import-outside-toplevel

  def cell(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)
  columns = record["columns"]
  return markdown_rows(columns, [[cell(row.get(c, "")) for c in columns]
                                 for row in record["rows"]])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("names", nargs="*", help=f"subset of {sorted(BENCHMARKS)}")
  parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
  parser.add_argument("--list", action="store_true")
  parser.add_argument("--save", default=None, metavar="DIR",
                      help="also write each table as DIR/<name>.json with its provenance")
  args = parser.parse_args(argv)
  if args.list:
    print("\n".join(sorted(BENCHMARKS)))
    return 0
  unknown = [n for n in args.names if n not in BENCHMARKS]
  if unknown:
    parser.error(f"unknown benchmark(s) {unknown}; valid: {sorted(BENCHMARKS)}")
  print(f"device: {common.device_description()}")
  for name in args.names or sorted(BENCHMARKS):
    module = importlib.import_module(BENCHMARKS[name])
    rows = module.run(quick=args.quick)
    print(f"\n== {getattr(module, 'TITLE', name)} ==")
    print(common.format_table(rows, getattr(module, "COLUMNS", None)))
    if args.save:
      print(f"saved {save(args.save, name, module, rows, args.quick)}")
    sys.stdout.flush()
  return 0


if __name__ == "__main__":
  sys.exit(main())
