"""What the discovered group buys: the discovery recipe's whole run beside fixed priors.

On the variants where C4 is the wrong prior (mirrored MNIST: a C4-invariant network must
confuse 6 and 9; rotated-and-mirrored MNIST: the group is D4) or where no subgroup is exact
(partial rotations in [0°, 180°]), the grid ``group_benefit`` (``experiments.identification``)
trains, on the same 24k images for 750 steps (2 epochs, batch 64, learning rate 1e-3), seeds
100–103 (100–101 for the fresh and the expanded rows), 16 channels:

* the plain CNN, the C4 G-CNN and the G-CNN of the variant's group (``configs/fixed_group.py``);
* the recipe (``configs/discover.py``): the subgroup selector until one subgroup holds
  ``q ≥ 0.95``, then, for the steps left, the exact G-CNN of that subgroup from fresh
  weights (row ``discovered``), the selector's trained backbone averaged over that subgroup
  (row ``kept``, ``discovery.keep_backbone``), or that backbone expanded into the subgroup's
  exact G-CNN (row ``expanded``, ``discovery.expand_backbone``: ``models.gcnn_from_cnn``);
* identify, then train (``discovery.then_train``, the recipe's way): the identification, then
  the named subgroup's G-CNN for the whole 750 steps (rows ``twostage``, the recipe's own
  runs; where a variant lacks one for some seed, its column is composed instead,
  :func:`identify_then_train`: the kept run's identification and the fixed run of the group
  it named, the same computation). The line under the table sets runs and composed values
  side by side.

  python -m experiments.grid run --grid=group_benefit --root=runs --seeds=100,101
  python -m experiments.grid run --grid=group_benefit --root=runs --seeds=102,103 \
      --rows='*_cnn,*_C4,*_flip,*_D4,*_kept,*_twostage'
  python -m experiments.group_benefit --root=runs --out=results/group_benefit \\
      --write_into docs/study/identification.md

The recipe's way was chosen on the grid ``benefit_tuning`` (seeds 0 and 1, accuracy on a
validation split of the training images; ``--tuning`` prints and writes its table, block
``benefit-tuning``, and applies the rule).

Test accuracy on the full frozen test set (10k) at the last step. The single-run discovered
rows spend their first few hundred steps on the selector, so a fresh G-CNN trains for fewer
steps than the fixed rows: the same total budget. The kept backbone has trained since step 0.
Identify-then-train spends the selector's steps on top of the budget.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Iterable, Optional, Sequence

from experiments.identification import BENEFIT_DATA, BENEFIT_TUNING, GROUP_BENEFIT
from experiments.spec import Grid
from experiments.spec import run_path
from experiments.tables import markdown_rows, write_into, write_records

MARKER = "benefit-table"  # the block experiments.tables.write_into fills
# The subgroup each variant's data has (None: no subgroup of D4 is an exact symmetry).
TRUE_GROUP = {"mirrored": "flip", "rotated_mirrored": "D4", "partial180": None}


def collect(root: str, grid: Grid = GROUP_BENEFIT) -> list[dict]:
  """One record per run of ``grid`` (``group_benefit`` or ``benefit_tuning``) found under
  ``root``."""
  from ds_symmetry import run_files  # pylint: disable=import-outside-toplevel
  records = []
  for row in grid.rows:
    data, model = row.name.rsplit("_", 1)
    for seed in grid.seeds:
      workdir = run_path(root, grid.name, row.name, seed)
      if not os.path.isdir(workdir):
        continue
      record = {"data": data, "model": model, "seed": seed}
      results = run_files.read_results(workdir, strict=False)
      if results is None or results.get("status") != "finished":
        records.append(dict(record, status=(results or {}).get("status", "missing")))
        continue
      discovery = results.get("discovery") or {}
      curve = [[r["step"], round(100 * r["test_accuracy"], 2)]
               for r in run_files.read_metrics(workdir, "eval") if "test_accuracy" in r]
      record.update(status="done", accuracy=round(100 * results["final_test_accuracy"], 2),
                    step=results["step"], wall_s=round(results["wall_time_s"], 1),
                    group=discovery.get("group"), discovered_at=discovery.get("step"),
                    discovered_wall_s=(round(discovery["wall_s"], 1)
                                       if discovery.get("wall_s") is not None else None),
                    curve=curve, provenance=results.get("provenance"))
      records.append(record)
  return records


def _cell(runs: Sequence[dict], seeds: Sequence[int]) -> str:
  """Mean (bold) and each seed's accuracy; the seeds named when some did not finish."""
  values = [r["accuracy"] for r in runs]
  if not values:
    return "–"
  text = " / ".join(f"{v:.1f}" for v in values)
  cell = f"**{statistics.mean(values):.1f}** ({text})" if len(values) > 1 else text
  ran = [r["seed"] for r in runs]
  if sorted(ran) != sorted(seeds):
    cell += f" (seed{'s' if len(ran) > 1 else ''} {', '.join(map(str, ran))} only)"
  return cell


def _runs_of(done: Sequence[dict], data: str, model: str) -> list[dict]:
  """The finished runs of one row (``data``, ``model``), by seed."""
  return sorted((r for r in done if r["data"] == data and r["model"] == model),
                key=lambda r: r["seed"])


def _found(runs: Sequence[dict]) -> str:
  """`` (<group> @ <step>, …)``: what each run committed to and when; empty without runs."""
  found = ", ".join(f"{r['group'] or 'none'} @ {r['discovered_at'] or '–'}" for r in runs)
  return f" ({found})" if found else ""


def _not_finished(records: Sequence[dict]) -> str:
  """A line naming every run that did not finish, with its status; empty when all did."""
  missing = [r for r in records if r["status"] != "done"]
  if not missing:
    return ""
  return "\nNot finished: " + ", ".join(
      f"{r['data']}/{r['model']}/seed{r['seed']} ({r['status']})" for r in missing) + "\n"


# "Identify, then train": the identification names a group, and the named group's exact G-CNN
# (the CNN for the trivial group) is then trained from fresh weights for the whole budget.
THEN_TRAINED = "then_trained"
# The recipe's ways on after the commitment: a fresh G-CNN of the answer for the steps left
# ("discovered"), the selector's backbone averaged over the answer ("kept",
# discovery.keep_backbone) or expanded into its G-CNN ("expanded", discovery.expand_backbone);
# or identify, then train (THEN_TRAINED).
DISCOVERED = ("discovered", "kept", "expanded", THEN_TRAINED)


def identify_then_train(records: Sequence[dict]) -> list[dict]:
  """One record per kept-backbone run: identify, then train.

  The first stage is the kept run up to its commitment, which is the identification itself
  (the selector trains the same way whatever comes after; ``configs/discover.py`` with
  ``discovery.stop_after`` ends there). The second stage trains the named group's exact G-CNN
  (``configs/fixed_group.py:<data>,<group>``, the CNN for the trivial group) from fresh weights
  for the whole budget at the same seed: that is the grid's fixed row of that group and seed,
  whose run is taken, not repeated. A group without a fixed run in the grid gives a record
  with ``status`` naming the run it needs. ``wall_s``: the identification's wall time up to the
  commitment plus the second stage's; ``steps``: both stages' steps.
  """
  from ds_symmetry.train.variants import answer_model  # pylint: disable=import-outside-toplevel
  done = [r for r in records if r["status"] == "done"]
  composed = []
  for ident in (r for r in done if r["model"] == "kept"):
    data, seed, group = ident["data"], ident["seed"], ident.get("group")
    record = {"data": data, "model": THEN_TRAINED, "seed": seed, "group": group,
              "discovered_at": ident.get("discovered_at")}
    if group is None:
      composed.append(dict(record, status="no group named"))
      continue
    row = answer_model(group)
    trained = next((r for r in done if (r["data"], r["model"], r["seed"]) == (data, row, seed)),
                   None)
    if trained is None:
      composed.append(dict(record, status=f"needs the fixed row {data}_{row}"))
      continue
    identification_s = ident.get("discovered_wall_s")
    composed.append(dict(
        record, status="done", accuracy=trained["accuracy"], trained=row,
        steps=(None if trained.get("step") is None
               else (ident.get("discovered_at") or 0) + trained["step"]),
        wall_s=(None if identification_s is None
                else round(identification_s + trained["wall_s"], 1))))
  return composed


def _verdicts(rows: dict, model: str) -> tuple[str, str]:
  """``(within 1 pt of the best fixed mean, above the C4 mean)`` for ``model``'s mean, every
  mean taken over the seeds ``model`` ran (rows may have different seeds: the comparison is
  paired). ``rows``: model → its finished runs."""
  seeds = {r["seed"] for r in rows[model]}
  acc = {m: [r["accuracy"] for r in runs if r["seed"] in seeds] for m, runs in rows.items()}
  fixed_means = [statistics.mean(v) for m, v in acc.items() if m not in DISCOVERED and v]
  if not acc[model] or not fixed_means:
    return "–", "–"
  ours = statistics.mean(acc[model])
  within = "yes" if ours >= max(fixed_means) - 1.0 else "no"
  above = ("yes" if ours > statistics.mean(acc["C4"]) else "no") if acc["C4"] else "–"
  return within, above


def table(records: Sequence[dict]) -> str:
  """Markdown: per variant, each model's test accuracy (mean, then each seed), the groups the
  recipe found and where, and whether the targets hold (for the fresh G-CNN / the kept
  backbone / the expanded backbone / identify-then-train; each against the fixed rows' means
  over its own seeds). Identify-then-train's cell is the recipe's own runs (rows
  ``*_twostage``, marked ``[runs]``) where the variant has one for every seed of its kept row,
  else composed (:func:`identify_then_train`, marked ``[composed]``); the line under the
  table sets the two side by side wherever both exist."""
  composed = identify_then_train(records)
  done = [r for r in records if r["status"] == "done"]
  seeds = sorted({r["seed"] for r in done})
  header = ("data", "CNN", "C4 G-CNN", "G-CNN of the data's group",
            "discovered, fresh G-CNN (found at step)", "discovered, backbone kept (found at step)",
            "discovered, backbone expanded (found at step)",
            "identify, then train: the recipe's runs or composed (found at step)",
            "within 1 pt of the best fixed (fresh / kept / expanded / then trained)",
            "above C4 (fresh / kept / expanded / then trained)")
  body, used = [], []
  for data in BENEFIT_DATA:
    rows = {model: _runs_of(done, data, model) for model in (*BENEFIT_DATA[data], *DISCOVERED)}
    own = _runs_of(done, data, TWO_STAGE)
    kept_seeds = {r["seed"] for r in rows["kept"]}
    if own and kept_seeds <= {r["seed"] for r in own}:
      rows[THEN_TRAINED], source = [dict(r, model=THEN_TRAINED) for r in own], "runs"
    else:
      rows[THEN_TRAINED] = _runs_of([r for r in composed if r["status"] == "done"], data,
                                    THEN_TRAINED)
      source = "composed"
      used += [r for r in composed if r["data"] == data]
    true = TRUE_GROUP[data]
    cell = {model: _cell(runs, seeds) for model, runs in rows.items()}
    for model in DISCOVERED:
      cell[model] += _found(rows[model])
    if rows[THEN_TRAINED]:
      cell[THEN_TRAINED] += f" [{source}]"
    verdicts = [_verdicts(rows, model) for model in DISCOVERED]
    body.append([data, cell["cnn"], cell["C4"],
                 f"{cell[true]} ({true})" if true else "none exact", cell["discovered"],
                 cell["kept"], cell["expanded"], cell[THEN_TRAINED],
                 " / ".join(v[0] for v in verdicts),
                 " / ".join(v[1] for v in verdicts)])
  text = (f"Test accuracy (%) after 750 steps, 16 channels, seeds {', '.join(map(str, seeds))} "
          f"(mean, then each seed).\n\n" + markdown_rows(header, body))
  return text + _two_stage_check(done, composed) + _not_finished([*records, *used])


TWO_STAGE = "twostage"  # the grid's rows of the recipe's own identify-then-train runs


def _two_stage_check(done: Sequence[dict], composed: Sequence[dict]) -> str:
  """A line setting each of the recipe's own identify-then-train runs (one command,
  ``discovery.then_train``; rows ``*_twostage``) beside the composed value of its variant and
  seed: the same computation, so they differ only by the float rounding of the convolution
  path each ran with (``provenance``), which 750 steps carry apart."""
  by_key = {(r["data"], r["seed"]): r for r in composed if r["status"] == "done"}
  checks = []
  for run in sorted((r for r in done if r["model"] == TWO_STAGE),
                    key=lambda r: (list(BENEFIT_DATA).index(r["data"])
                                   if r["data"] in BENEFIT_DATA else 99, r["seed"])):
    other = by_key.get((run["data"], run["seed"]))
    found = f"{run['group']} @ {run['discovered_at']}"
    checks.append(f"{run['data']} seed {run['seed']}: {run['accuracy']:.2f} ({found}), composed "
                  + (f"{other['accuracy']:.2f} ({other['group']} @ {other['discovered_at']})"
                     if other else "–"))
  if not checks:
    return ""
  return ("\nThe recipe's own identify-then-train runs (`discovery.then_train`, one command), "
          "beside the composed values: " + "; ".join(checks) + ".\n")


CURVES_MARKER = "benefit-curves"  # the block of :func:`curves_table`
_LABELS = {"cnn": "CNN", "C4": "C4 G-CNN", "flip": "flip G-CNN", "D4": "D4 G-CNN",
           "discovered": "discovered, fresh G-CNN", "kept": "discovered, backbone kept",
           "expanded": "discovered, backbone expanded"}


def curves_table(records: Sequence[dict], seed: int = 100,
                 data: Sequence[str] = ("mirrored", "rotated_mirrored")) -> str:
  """Markdown: one seed's test accuracy at every evaluation (``curve``) of each run on
  ``data``, with the step of the commitment. (No wall times: the runs were not timed side by
  side, and some shared the cores with other jobs.)"""
  runs = [r for r in records if r["status"] == "done" and r["seed"] == seed
          and r["data"] in data and r.get("curve")]
  if not runs:
    return f"No evaluation curves of seed {seed} in the records.\n"
  steps = sorted({step for r in runs for step, _ in r["curve"]})
  body = []
  order = {model: i for i, model in enumerate(_LABELS)}
  for r in sorted(runs, key=lambda r: (data.index(r["data"]), order.get(r["model"], 99))):
    at = dict(r["curve"])
    label = f"{r['data']}: {_LABELS.get(r['model'], r['model'])}"
    if r.get("discovered_at"):
      label += f" ({r['group']} from step {r['discovered_at']})"
    body.append([label, *(f"{at[s]:.1f}" if s in at else "–" for s in steps)])
  return (f"Seed {seed}: test accuracy (%) at each evaluation step.\n\n"
          + markdown_rows(("run", *map(str, steps)), body))


TUNING_MARKER = "benefit-tuning"  # the block of :func:`tuning_table`


def tuning_table(records: Sequence[dict]) -> str:
  """Markdown: the ``benefit_tuning`` grid, validation accuracy of the kept and the expanded
  backbone and of identify-then-train (:func:`identify_then_train`) per variant (mean, then
  each seed), the groups found, the differences from the kept backbone, and the rule that
  chooses between the kept backbone and identify-then-train (the grid's notes): the latter is
  adopted if its mean over every variant and seed is at least the kept backbone's over the
  same runs."""
  records = [*records, *identify_then_train(records)]
  done = [r for r in records if r["status"] == "done"]
  seeds = sorted({r["seed"] for r in done})
  ways = ("kept", "expanded", THEN_TRAINED)
  body = []
  for data in dict.fromkeys(r["data"] for r in records):
    runs = {model: _runs_of(done, data, model) for model in ways}
    cells = [_cell(runs[model], seeds) + _found(runs[model]) for model in ways]
    gaps = []
    for model in ways[1:]:
      gap = "–"
      if runs["kept"] and runs[model]:
        means = [statistics.mean(r["accuracy"] for r in runs[m]) for m in (model, "kept")]
        gap = f"{means[0] - means[1]:+.1f}"
      gaps.append(gap)
    body.append([data, *cells, *gaps])
  text = (f"Validation accuracy (%) after 750 steps (2,000 of 5,000 training images held out), "
          f"16 channels, tuning seeds {', '.join(map(str, seeds))} (mean, then each seed).\n\n"
          + markdown_rows(("data", "backbone kept (found at step)",
                           "backbone expanded (found at step)",
                           "identified, then its G-CNN trained (found at step)",
                           "expanded − kept", "then trained − kept"), body))
  return text + _then_trained_rule(done) + _not_finished(records)


def _then_trained_rule(done: Sequence[dict]) -> str:
  """The line that applies the rule to the runs both ways have (same variant and seed)."""
  by_key = {(r["data"], r["seed"], r["model"]): r["accuracy"] for r in done}
  pairs = [(by_key[(d, s, "kept")], by_key[(d, s, THEN_TRAINED)])
           for (d, s, m) in by_key if m == "kept" and (d, s, THEN_TRAINED) in by_key]
  if not pairs:
    return ""
  kept = statistics.mean(p[0] for p in pairs)
  then = statistics.mean(p[1] for p in pairs)
  verdict = "adopted" if then >= kept else "not adopted"
  return (f"\nOver the {len(pairs)} runs both ways have: kept backbone {kept:.1f}, identified "
          f"then trained {then:.1f}; by the rule fixed before the runs (at least the kept "
          f"backbone's mean), identify-then-train is **{verdict}**.\n")


def main(argv: Optional[Iterable[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--root", required=True)
  parser.add_argument("--out", default=None,
                      help="default: results/<grid> (group_benefit or benefit_tuning)")
  parser.add_argument("--write_into", nargs="*", default=(),
                      help="files whose benefit-table markers get the table")
  parser.add_argument("--tuning", action="store_true",
                      help="the benefit_tuning grid instead (summary.json and table.md under "
                           "--out, block benefit-tuning)")
  args = parser.parse_args(list(argv) if argv is not None else None)
  if not os.path.isdir(args.root):
    parser.error(f"--root: {args.root!r} is not a directory")
  grid = BENEFIT_TUNING if args.tuning else GROUP_BENEFIT
  records = collect(args.root, grid)
  args.out = args.out or os.path.join("results", grid.name)
  os.makedirs(args.out, exist_ok=True)
  write_records(os.path.join(args.out, "summary.json"), records)
  blocks = ({TUNING_MARKER: tuning_table(records)} if args.tuning else
            {MARKER: table(records), CURVES_MARKER: curves_table(records)})
  text = next(iter(blocks.values()))
  with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as handle:
    handle.write(text)
  for path in args.write_into:
    for marker, block in blocks.items():
      write_into(path, marker, block)
  print(text, end="")
  print(f"{len(records)} runs; wrote {args.out}/summary.json, table.md")
  return 0


if __name__ == "__main__":
  sys.exit(main())
