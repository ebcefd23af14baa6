"""Runs benchmarks and prints their tables.

Usage::

  python -m benchmarks.run                 # every benchmark, full size
  python -m benchmarks.run sinkhorn --quick
  python -m benchmarks.run --list

Each benchmark module in ``BENCHMARKS`` exposes ``run(quick: bool) -> list[dict]`` and an
optional ``COLUMNS`` list and ``TITLE`` string.
"""

from __future__ import annotations

import argparse
import importlib
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
}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("names", nargs="*", help=f"subset of {sorted(BENCHMARKS)}")
  parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
  parser.add_argument("--list", action="store_true")
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
    sys.stdout.flush()
  return 0


if __name__ == "__main__":
  sys.exit(main())
