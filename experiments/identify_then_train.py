"""Identify, then train: the discovery recipe names the data's subgroup of D4, then that
subgroup's exact G-CNN is trained from fresh weights for the whole budget.

  python -m experiments.identify_then_train --data=mirrored --workdir=runs/mirrored_then
  python -m experiments.identify_then_train --data=rotated_mirrored --seed=100 \\
      --workdir=runs/rm100 -- --config.progress_bar=off

Stage 1, ``<workdir>/identify``: ``configs/discover.py:<data>,<channels>`` with
``discovery.stop_after=True`` and ``discovery.keep_backbone=False``: the subgroup selector
until it commits to one subgroup (the identification benchmark's run; a few hundred steps).
Stage 2, ``<workdir>/trained``: ``configs/fixed_group.py:<data>,<group>,<channels>`` for the
group stage 1 named (the plain CNN for the trivial group), same seed, the whole budget (750
steps): the same run as that fixed prior's. What stage 2 is told: that the answer is the named
subgroup; what stage 1 is told: ``configs/discover.py``.

Each stage is an ordinary run of ``ds_symmetry.main``: rerunning the command resumes whichever
stage was cut off (a finished stage only reports again). Arguments after ``--`` go to both
stages. ``<workdir>/identify_then_train.json`` records the group, the step and wall time of the
identification and stage 2's test accuracy. Against the single-run ways of
``configs/discover.py`` (the kept backbone), this costs the identification's steps on top of
the budget and trains the named G-CNN, which on rotated-and-mirrored MNIST the backbone
averaged over D4 does not match (``docs/study/identification.md``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Callable, Optional, Sequence

from experiments.spec import REPO_ROOT

IDENTIFY, TRAINED = "identify", "trained"  # the two stages' run directories under --workdir
SUMMARY = "identify_then_train.json"


def stage_command(stage: str, data: str, channels: int, seed: int, workdir: str,
                  group: Optional[str] = None, extra: Sequence[str] = (),
                  python: Optional[str] = None) -> list[str]:
  """The ``ds_symmetry.main`` command of one stage (``group``: stage 2's, named by stage 1)."""
  if stage == IDENTIFY:
    config = [f"--config=configs/discover.py:{data},{channels}",
              "--config.discovery.stop_after=True", "--config.discovery.keep_backbone=False"]
  elif stage == TRAINED:
    if group is None:
      raise ValueError("group: None is not accepted for stage 'trained'; expected the subgroup "
                       "stage 'identify' named")
    model = "cnn" if group == "trivial" else group
    config = [f"--config=configs/fixed_group.py:{data},{model},{channels}"]
  else:
    raise ValueError(f"stage: {stage!r} is not accepted; expected {IDENTIFY!r} or {TRAINED!r}")
  return ([python or sys.executable, "-m", "ds_symmetry.main", *config,
           f"--workdir={os.path.join(workdir, stage)}", f"--config.seed={seed}", *extra])


def named_group(identify_dir: str) -> tuple[str, dict]:
  """``(group, discovery record)`` of a finished identification run; ``ValueError`` in one line
  when it ended without committing."""
  from ds_symmetry import run_files  # pylint: disable=import-outside-toplevel
  discovered = run_files.load_discovered(identify_dir)
  if discovered is None or discovered[1].get("group") is None:
    raise ValueError(f"{identify_dir}: the identification ended without naming a subgroup (the "
                     f"selector never committed within its steps); nothing to train")
  return discovered[1]["group"], discovered[1]


def _run(command: Sequence[str]) -> int:
  return subprocess.run(list(command), cwd=REPO_ROOT, check=False).returncode


def main(argv: Optional[Sequence[str]] = None,
         run: Callable[[Sequence[str]], int] = _run) -> int:
  """Runs both stages (``run``: executes one command, returns its exit status)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  extra = argv[argv.index("--") + 1:] if "--" in argv else []
  argv = argv[:argv.index("--")] if "--" in argv else argv
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", required=True,
                      help="a data variant of configs/discover.py (e.g. mirrored)")
  parser.add_argument("--channels", type=int, default=16)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", required=True)
  args = parser.parse_args(argv)
  from configs import discover  # pylint: disable=import-outside-toplevel
  try:
    discover.parse(f"{args.data},{args.channels}")
  except ValueError as error:
    parser.error(str(error))
  from ds_symmetry import run_files  # pylint: disable=import-outside-toplevel
  os.makedirs(args.workdir, exist_ok=True)
  common = dict(data=args.data, channels=args.channels, seed=args.seed, workdir=args.workdir,
                extra=extra)
  status = run(stage_command(IDENTIFY, **common))
  if status:
    print(f"error: stage {IDENTIFY!r} exited with status {status}", file=sys.stderr)
    return status
  try:
    group, record = named_group(os.path.join(args.workdir, IDENTIFY))
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  print(f"stage {IDENTIFY!r}: {group} at step {record['step']}; training its "
        f"{'CNN' if group == 'trivial' else 'G-CNN'} for the whole budget", flush=True)
  status = run(stage_command(TRAINED, group=group, **common))
  if status:
    print(f"error: stage {TRAINED!r} exited with status {status}", file=sys.stderr)
    return status
  trained = run_files.read_results(os.path.join(args.workdir, TRAINED)) or {}
  summary = {"data": args.data, "channels": args.channels, "seed": args.seed, "group": group,
             "identified_at_step": record["step"], "identification_wall_s": record.get("wall_s"),
             "trained_steps": trained.get("step"),
             "trained_wall_s": trained.get("wall_time_s"),
             "test_accuracy": trained.get("final_test_accuracy")}
  run_files.write_json(os.path.join(args.workdir, SUMMARY), summary)
  accuracy = summary["test_accuracy"]
  print(f"identified {group} at step {record['step']}; its "
        f"{'CNN' if group == 'trivial' else 'G-CNN'} trained {summary['trained_steps']} steps: "
        f"test accuracy {'–' if accuracy is None else f'{100 * accuracy:.2f}%'}; wrote "
        f"{os.path.join(args.workdir, SUMMARY)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
