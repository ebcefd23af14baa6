"""The group-identification benchmark: which subgroup of D4 does each MNIST variant yield?

Two answers per run, from two methods that share nothing but the data:

* **learned** (``configs/discover.py``, ``nn.SubgroupSelector``): the recipe's one training run,
  stopped at the step where one subgroup holds ``q ≥ 0.95`` (checked every 10 steps) or at
  500 steps (then *undecided*);
* **invariance test** (``configs/invariance_test.py``): a plain 32-channel CNN trained 300
  steps; its held-out loss on each isometry of the validation images relative to the
  untransformed ones names the largest subgroup whose every element has ratio ≤ 1.05
  (``analysis.invariant_subgroup``).

Each answer is scored against the variant's expected subgroup as *exact*, *superset* (the
data's group plus transformations the data do not have: not a success) or *wrong*.

Grids (``python -m experiments.grid list``), run one at a time (resumable; a done run is
skipped):

  identification_tuning   16 channels, seeds 0–4, validation split: where settings are chosen
  identification16        16 channels, held-out seeds 100–109
  identification32        32 channels, held-out seeds 100–104
  invariance_test         the independent check, seeds 100–104

  python -m experiments.grid run --grid=identification16 --root=runs
  python -m experiments.identification report --root=runs --out=results/identification \
      --figure docs/figures/identification.png \
      --write_into README.md docs/study/identification.md

``report`` writes ``summary.json`` (one record per run), ``table.md`` and
``identification.png`` under ``--out`` (small: no workdir payloads). ``--keep
results/identification/summary.json`` keeps the records of runs whose workdirs are not under
``--root`` (e.g. grids run on another machine), each with the provenance it was recorded with.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Iterable, Optional, Sequence

from experiments.spec import Grid, Row, run_path
from experiments.tables import markers, read_records, write_into as write_marked, write_records

# The data variants with an expected answer, in table order (configs/discover.py: VARIANTS).
EXPECTED = {"upright": "trivial", "mirrored": "flip", "rotated_c2": "C2", "rotated_c4": "C4",
            "rotated": "C4", "rotated_mirrored": "D4", "scaled": "trivial"}
DATA = tuple(EXPECTED)
# Every identification run: stop at the rounding or at 500 steps; a small frozen test set
# (only the answer and its step are read).
IDENTIFY = {"discovery.stop_after": True, "discovery.keep_backbone": False,
            "discovery.then_train": False,
            "num_train_steps": 500, "limit_test": 500,
            "evals_per_epoch": 1, "checkpoint_every_steps": 100_000, "progress_bar": "off",
            "save_figures": False}
# The settings search: the same, evaluated on 2,000 of the 5,000 held-out training images.
TUNING = {"discovery.stop_after": True, "discovery.keep_backbone": False,
          "discovery.then_train": False,
          "num_train_steps": 500, "limit_test": 2000,
          "evals_per_epoch": 1, "checkpoint_every_steps": 100_000, "progress_bar": "off",
          "protocol_options.validation_examples": 5000}


def _rows(channels: int, overrides: dict) -> tuple[Row, ...]:
  return tuple(Row(f"{data}_{channels}", f"configs/discover.py:{data},{channels}",
                   f"SubgroupSelector ({channels} ch)", data, overrides=overrides)
               for data in DATA)


IDENTIFICATION_TUNING = Grid(
    "identification_tuning", "Group identification, settings search (validation split)",
    _rows(16, TUNING), seeds=(0, 1, 2, 3, 4),
    notes=("seeds 0-4 choose the settings; they are never reported as results",))
IDENTIFICATION16 = Grid(
    "identification16", "Group identification, 16 channels, held-out seeds",
    _rows(16, IDENTIFY), seeds=tuple(range(100, 110)))
IDENTIFICATION32 = Grid(
    "identification32", "Group identification, 32 channels, held-out seeds",
    _rows(32, IDENTIFY), seeds=tuple(range(100, 105)))
INVARIANCE_TEST = Grid(
    "invariance_test", "The data's invariances from a plain CNN (the independent check)",
    tuple(Row(data, f"configs/invariance_test.py:{data}", "CNN (32 ch), 300 steps", data,
              overrides={"progress_bar": "off"}) for data in DATA),
    seeds=tuple(range(100, 105)))
# What the discovered group buys (item 5 of issue 24): the recipe's whole run (identify, round,
# train the discovered G-CNN for the rest of the 750 steps; or, "kept", train the selector's own
# backbone averaged over the answer) beside fixed priors trained the same way
# (configs/fixed_group.py), on the variants where C4 is the wrong prior or no group is exact.
BENEFIT_DATA = {"mirrored": ("cnn", "C4", "flip"), "rotated_mirrored": ("cnn", "C4", "D4"),
                "partial180": ("cnn", "C4")}
BENEFIT = {"progress_bar": "off", "save_figures": False, "checkpoint_every_steps": 250}


def _benefit_rows(channels: int) -> tuple[Row, ...]:
  rows = []
  for data, fixed in BENEFIT_DATA.items():
    for model in fixed:
      label = "CNN" if model == "cnn" else f"{model} G-CNN"
      rows.append(Row(f"{data}_{model}", f"configs/fixed_group.py:{data},{model},{channels}",
                      f"{label} ({channels} ch)", data, overrides=BENEFIT))
    rows.append(Row(f"{data}_discovered", f"configs/discover.py:{data},{channels}",
                    f"discovered G-CNN ({channels} ch)", data,
                    overrides=dict(BENEFIT, **FRESH)))
    rows.append(Row(f"{data}_kept", f"configs/discover.py:{data},{channels}",
                    f"discovered, backbone kept ({channels} ch)", data,
                    overrides=dict(BENEFIT, **KEPT)))
    rows.append(Row(f"{data}_expanded", f"configs/discover.py:{data},{channels}",
                    f"discovered, backbone expanded ({channels} ch)", data,
                    overrides=dict(BENEFIT, **EXPANDED)))
    rows.append(Row(f"{data}_twostage", f"configs/discover.py:{data},{channels}",
                    f"identify, then train, in one command ({channels} ch)", data,
                    overrides=BENEFIT))
  return tuple(rows)


# How the selector's backbone goes on after the commitment: averaged over the answer, or
# expanded into the answer's G-CNN (models.gcnn_from_cnn).
KEPT = {"discovery.keep_backbone": True, "discovery.expand_backbone": False,
        "discovery.then_train": False}
EXPANDED = {"discovery.keep_backbone": True, "discovery.expand_backbone": True,
            "discovery.then_train": False}
FRESH = {"discovery.keep_backbone": False, "discovery.then_train": False}
# Choosing between them: tuning seeds, validation split (5,000 held-out training images, 2,000
# of them evaluated), on the variants whose answer is not the trivial group (there both are
# the backbone itself).
BENEFIT_TUNING_DATA = ("mirrored", "rotated_mirrored")
BENEFIT_VALIDATION = {"protocol_options.validation_examples": 5000, "limit_test": 2000}


def _benefit_tuning_rows(channels: int) -> tuple[Row, ...]:
  rows = [Row(f"{data}_{name}", f"configs/discover.py:{data},{channels}",
              f"discovered, backbone {name} ({channels} ch)", data,
              overrides=dict(BENEFIT, **BENEFIT_VALIDATION, **how))
          for data in BENEFIT_TUNING_DATA for name, how in (("kept", KEPT), ("expanded", EXPANDED))]
  # The second stage of "identify, then train" (the answer's G-CNN for the whole budget) on
  # the tuning seeds: the fixed G-CNN of each variant's group, and the CNN beside it.
  rows += [Row(f"{data}_{model}", f"configs/fixed_group.py:{data},{model},{channels}",
               f"{'CNN' if model == 'cnn' else model + ' G-CNN'} ({channels} ch)", data,
               overrides=dict(BENEFIT, **BENEFIT_VALIDATION))
           for data in BENEFIT_TUNING_DATA for model in ("cnn", BENEFIT_DATA[data][-1])]
  return tuple(rows)


GROUP_BENEFIT = Grid(
    "group_benefit", "What the discovered group buys: 2 epochs of 24k images, 16 channels",
    _benefit_rows(16), seeds=(100, 101, 102, 103),
    notes=("seeds 102-103 were added, before any of them ran, to the fixed rows and the kept "
           "backbone (then the recipe's way) only: --rows='*_cnn,*_C4,*_flip,*_D4,*_kept' "
           "--seeds=102,103; the fresh and expanded rows ran seeds 100-101",
           "the *_twostage rows (the recipe's discovery.then_train, one command) were added "
           "later: seed 100 first, as a check of the composed identify-then-train cells (the "
           "kept run's identification and the fixed run of the group it named, "
           "experiments.group_benefit.identify_then_train), then seeds 101-103, decided "
           "before any of them ran, so that the column is the recipe's own runs",))
BENEFIT_TUNING = Grid(
    "benefit_tuning", "Averaged or expanded backbone, chosen on a validation split",
    _benefit_tuning_rows(16), seeds=(0, 1),
    notes=("tuning seeds on the validation split; never reported as results",
           "the fixed rows (*_cnn, *_flip, *_D4) were added later, to choose between the kept "
           "backbone and identify-then-train (the named group's G-CNN trained for the whole "
           "budget, after the identification); the rule, fixed before they ran: "
           "identify-then-train becomes the way the recipe's discovered model is reported if "
           "its mean validation accuracy over both variants and both seeds is at least the "
           "kept backbone's",))
# The grids whose runs give answers (the others give accuracies: experiments.group_benefit).
IDENTIFICATION_GRIDS = (IDENTIFICATION_TUNING, IDENTIFICATION16, IDENTIFICATION32,
                        INVARIANCE_TEST)
GRIDS = IDENTIFICATION_GRIDS + (GROUP_BENEFIT, BENEFIT_TUNING)


def score(answer: Optional[str], expected: str) -> str:
  """``"exact"``, ``"superset"`` (contains the expected subgroup and more), ``"wrong"`` or
  ``"undecided"`` (no answer)."""
  from ds_symmetry.ops import d4_elements  # pylint: disable=import-outside-toplevel
  if answer is None:
    return "undecided"
  if answer == expected:
    return "exact"
  if set(d4_elements(expected)) < set(d4_elements(answer)):
    return "superset"
  return "wrong"


def _learned_record(grid: str, data: str, channels: int, seed: int, workdir: str) -> dict:
  from ds_symmetry import run_files  # pylint: disable=import-outside-toplevel
  record = {"method": "learned", "grid": grid, "data": data, "channels": channels,
            "seed": seed, "expected": EXPECTED[data]}
  results = run_files.read_results(workdir, strict=False)
  if results is None:
    return dict(record, status="missing")
  discovered = run_files.load_discovered(workdir)
  found = None if discovered is None else discovered[1]
  answer = None if found is None else found["group"]
  record.update(status="done", answer=answer, score=score(answer, EXPECTED[data]),
                step=None if found is None else found["step"],
                wall_s=None if found is None else round(found["wall_s"], 1),
                probability=(None if found is None
                             else max(found["subgroup_probabilities"].values())),
                provenance=results.get("provenance"))
  return record


def _invariance_record(data: str, seed: int, workdir: str, tolerance: float) -> dict:
  # pylint: disable=import-outside-toplevel
  from ds_symmetry import run_files
  from ds_symmetry.analysis.invariance import invariance_ratios, invariant_subgroup
  from ds_symmetry.data import make_protocol
  from ds_symmetry.train.restore import load_model
  record = {"method": "invariance_test", "grid": INVARIANCE_TEST.name, "data": data,
            "channels": 32, "seed": seed, "expected": EXPECTED[data]}
  results = run_files.read_results(workdir, strict=False)
  if results is None:
    return dict(record, status="missing")
  model, config, _ = load_model(workdir)
  protocol = make_protocol(config.protocol, data_dir=config.get("data_dir"), seed=config.seed,
                           limit_train=config.limit_train, **config.protocol_options.to_dict())
  from flax import nnx
  apply = nnx.jit(lambda module, x: module(x))
  ratios = invariance_ratios(lambda x: apply(model, x), protocol.test_images,
                             protocol.test_labels)
  answer = invariant_subgroup(ratios, tolerance)
  record.update(status="done", answer=answer, score=score(answer, EXPECTED[data]),
                step=config.num_train_steps, ratios=[round(float(r), 4) for r in ratios],
                wall_s=round(results["wall_time_s"], 1),
                provenance=results.get("provenance"))
  return record


def collect(root: str, tolerance: float = 0.05) -> list[dict]:
  """One record per run of the answer grids (:data:`IDENTIFICATION_GRIDS`) under ``root``."""
  records = []
  for grid in IDENTIFICATION_GRIDS:
    for row in grid.rows:
      for seed in grid.seeds:
        workdir = run_path(root, grid.name, row.name, seed)
        if not os.path.isdir(workdir):
          continue
        if grid is INVARIANCE_TEST:
          records.append(_invariance_record(row.name, seed, workdir, tolerance))
        else:
          data, channels = row.name.rsplit("_", 1)
          records.append(_learned_record(grid.name, data, int(channels), seed, workdir))
  return records


def _run_key(record: dict) -> tuple:
  return (record["method"], record["grid"], record["data"], record["channels"], record["seed"])


def merge(records: Sequence[dict], previous: Sequence[dict]) -> list[dict]:
  """``records`` plus every finished record of ``previous`` (an earlier ``summary.json``) whose
  run is not among them: runs whose workdirs are gone stay reported, each with the provenance
  it was recorded with. A run present in both is taken from ``records``."""
  present = {_run_key(r) for r in records}
  kept = [r for r in previous if r.get("status") == "done" and _run_key(r) not in present]
  order = {grid.name: i for i, grid in enumerate(GRIDS)}
  return sorted(list(records) + kept,
                key=lambda r: (order.get(r["grid"], len(order)), r["data"], r["channels"],
                               r["seed"]))


def table(records: Sequence[dict]) -> str:
  """Markdown: per variant, each method's answers with their counts and the success rate."""
  columns = [("identification16", "learned, 16 ch"), ("identification32", "learned, 32 ch"),
             ("invariance_test", "invariance test"),
             ("identification_tuning", "learned, 16 ch, tuning")]
  present = []
  for grid, title in columns:
    seeds = sorted({r["seed"] for r in records if r["grid"] == grid and r["status"] == "done"})
    if seeds:
      present.append((grid, f"{title} (seeds {', '.join(map(str, seeds))})"))
  lines = ["| data | expected | " + " | ".join(title for _, title in present) + " |",
           "|---|---|" + "---|" * len(present)]
  for data in DATA:
    cells = []
    for grid, _ in present:
      done = [r for r in records if r["grid"] == grid and r["data"] == data
              and r["status"] == "done"]
      if not done:
        cells.append("–")
        continue
      exact = sum(r["score"] == "exact" for r in done)
      answers = {}
      for r in done:
        answers[r["answer"] or "undecided"] = answers.get(r["answer"] or "undecided", 0) + 1
      steps = [r["step"] for r in done if r["answer"] is not None and r["step"] is not None]
      walls = [r["wall_s"] for r in done if r.get("wall_s") is not None]
      detail = ", ".join(f"{name} {count}" for name, count in sorted(answers.items()))
      cost = (f"; step ≤ {max(steps)}" if steps and grid != "invariance_test" else "")
      cost += f"; median {sorted(walls)[len(walls) // 2]:.0f} s" if walls else ""
      cells.append(f"**{exact}/{len(done)}** ({detail}{cost})")
    lines.append(f"| {data} | {EXPECTED[data]} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot(records: Sequence[dict], path: str) -> None:
  """Commit step of every learned run per variant (marker: exact / superset / wrong)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  figure, axis = plt.subplots(figsize=(7, 3.2))
  markers = {"exact": "o", "superset": "^", "wrong": "x", "undecided": "s"}
  for offset, grid in ((-0.15, "identification16"), (0.15, "identification32")):
    for index, data in enumerate(DATA):
      for r in records:
        if r["grid"] == grid and r["data"] == data and r["status"] == "done":
          step = r["step"] if r["step"] is not None else 500
          axis.scatter(index + offset, step, marker=markers[r["score"]],
                       color="C0" if grid.endswith("16") else "C1", s=18)
  axis.set_xticks(range(len(DATA)), [f"{d}\n→{EXPECTED[d]}" for d in DATA], fontsize=7)
  from configs.discover import WARMUP_STEPS  # pylint: disable=import-outside-toplevel
  axis.axhline(WARMUP_STEPS, color="0.6", linestyle="--", linewidth=0.8)
  axis.text(len(DATA) - 0.5, WARMUP_STEPS + 8, "end of warm-up", ha="right", fontsize=6)
  axis.set_ylabel("commit step")
  axis.set_ylim(0, 520)
  axis.set_title("Step at which the learned model committed (blue 16 ch, orange 32 ch; "
                 "o exact, ^ superset, x wrong, ■ undecided)", fontsize=7)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def report(root: str, out: str, tolerance: float = 0.05,
           figure: Optional[str] = None, keep: Optional[str] = None) -> list[dict]:
  """Writes ``summary.json``, ``table.md`` and ``identification.png`` under ``out`` (the
  figure also to ``figure`` when given, e.g. the docs' figures folder). ``keep``: an earlier
  ``summary.json`` whose records of runs not under ``root`` are kept (:func:`merge`)."""
  records = collect(root, tolerance)
  if keep:
    records = merge(records, read_records(keep))
  os.makedirs(out, exist_ok=True)
  write_records(os.path.join(out, "summary.json"), records)
  with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as handle:
    handle.write(table(records))
  plot(records, os.path.join(out, "identification.png"))
  if figure:
    plot(records, figure)
  return records


def headline(records: Sequence[dict]) -> str:
  """One sentence with the learned method's held-out success rates (exact answers over every
  run, failures included), per width: the README's first paragraph quotes it (generated)."""
  parts = []
  for grid, width in (("identification16", 16), ("identification32", 32)):
    runs = [r for r in records if r["grid"] == grid and r["status"] == "done"]
    if runs:
      exact = sum(r["score"] == "exact" for r in runs)
      parts.append(f"{exact} of {len(runs)} held-out runs at {width} channels")
  variants = len({r["data"] for r in records if r["grid"] in ("identification16",
                                                                 "identification32")})
  return (f"On {variants} MNIST variants whose symmetry is known it named the right subgroup in "
          f"{' and '.join(parts) or 'no run yet'}.\n")


HEADLINE_MARKER = "identification-headline"
MARKER = "identification-table"
START, END = markers(MARKER)


def write_into(path: str, text: str) -> None:
  """The table into ``path`` between the ``START`` and ``END`` markers
  (``experiments.tables.write_into``)."""
  write_marked(path, MARKER, text)


def main(argv: Optional[Iterable[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  rep = sub.add_parser("report", help="tabulate the identification runs under --root")
  rep.add_argument("--root", required=True)
  rep.add_argument("--out", default="results/identification")
  rep.add_argument("--tolerance", type=float, default=0.05)
  rep.add_argument("--figure", default=None, help="also draw the figure here")
  rep.add_argument("--keep", default=None, metavar="SUMMARY_JSON",
                   help="an earlier summary.json: its records of runs not under --root stay")
  rep.add_argument("--write_into", nargs="*", default=(),
                   help="files whose identification-table markers get the table")
  args = parser.parse_args(list(argv) if argv is not None else None)
  if not os.path.isdir(args.root):
    parser.error(f"--root: {args.root!r} is not a directory")
  if args.keep and not os.path.isfile(args.keep):
    parser.error(f"--keep: {args.keep!r} is not a file (expected an earlier summary.json)")
  records = report(args.root, args.out, args.tolerance, args.figure, args.keep)
  for path in args.write_into:
    write_into(path, table(records))
  print(table(records), end="")
  print(f"{len(records)} runs; wrote {args.out}/summary.json, table.md, identification.png")
  return 0


if __name__ == "__main__":
  sys.exit(main())
