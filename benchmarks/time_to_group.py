"""Time to group: the wall time from the start of a run to the commitment of the recipe.

  python -m benchmarks.run time_to_group [--quick]
  python -m benchmarks.time_to_group [--channels 16,32] [--seeds 0,1,2]

The group-identification recipe (``configs/discover.py``) on rotated MNIST, each run in this
process through ``train.train_and_evaluate`` with ``discovery.stop_after`` (the run ends at the
step where one subgroup holds ``q ≥ 0.95``, checked every 10 steps), in a fresh temporary
workdir: ``commit_s`` is the trainer's own clock from the start of the run to the rounding
(data loading, compilation and the steps; the discovery record's ``wall_s``), ``step`` the
step of the commitment, ``group`` the answer (C4 expected). Seeds 0–2 are tuning seeds of the
identification study: this measures cost, not success (that is the study's held-out table).
Quick mode: 4 channels, 512 images, a 20-step warm-up, seed 0: it checks the benchmark runs.
"""

from __future__ import annotations

import argparse
import tempfile

import ds_symmetry  # noqa: F401  (fast CPU convolution flag, before jax starts)
from benchmarks.common import format_table

TITLE = "Time to group: start of a run to the recipe's commitment (rotated MNIST)"
COLUMNS = ["channels", "seed", "group", "step", "commit_s", "s_per_step"]


def time_to_group(channels: int, seed: int, *, quick: bool = False) -> dict:
  """One run of the recipe to its commitment; a row of the table."""
  # pylint: disable=import-outside-toplevel
  from configs import discover
  from ds_symmetry.train import train_and_evaluate
  from experiments.identification import IDENTIFY
  config = discover.get_config(f"rotated,{channels}")
  config.seed = seed
  config.update_from_flattened_dict(IDENTIFY)  # the identification benchmark's settings
  if quick:
    config.limit_train, config.num_train_steps, config.batch_size = 512, 40, 16
    config.model_options.warmup_steps = 20
    config.limit_test = 64
  with tempfile.TemporaryDirectory(prefix="time_to_group_") as workdir:
    results = train_and_evaluate(config, workdir)
  found = results.get("discovery") or {}
  step = found.get("step")
  commit_s = found.get("wall_s")
  return {"channels": channels, "seed": seed, "group": found.get("group", "undecided"),
          "step": step if step is not None else f">{results['step']}",
          "commit_s": commit_s if commit_s is not None else "",
          "s_per_step": commit_s / step if commit_s and step else ""}


def run(quick: bool, channels=(16, 32), seeds=(0, 1, 2)) -> list[dict]:
  if quick:
    return [time_to_group(4, 0, quick=True)]
  return [time_to_group(c, s) for c in channels for s in seeds]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--channels", default="16,32")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args(argv)
  ints = lambda text: tuple(int(v) for v in text.split(","))
  rows = run(args.quick, ints(args.channels), ints(args.seeds))
  print(format_table(rows, COLUMNS))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
