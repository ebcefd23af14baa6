"""The documentation's tables that come from committed summaries, generated and never typed.

  python -m experiments.doc_tables            # rewrite every generated block in the pages
  python -m experiments.doc_tables --check    # exit 1, naming each block that differs

A generated block lies between ``<!-- <marker>:start -->`` and ``<!-- <marker>:end -->`` in a
page (``experiments.tables.write_into``); :data:`BLOCKS` maps each marker to the function that
makes its text from the committed summaries under the repository root:

* ``identification-table``: ``results/identification/summary.json`` (the table
  ``python -m experiments.identification report`` writes);
* ``identification-tuning-passes``: the passes of the identification settings search, from
  ``results/identification/tuning_passes/*/summary.json`` and, for the last (the recipe's
  settings), the tuning grid's runs in ``results/identification/summary.json``;
* ``benefit-table``, ``benefit-curves``: ``results/group_benefit/summary.json`` (``python -m
  experiments.group_benefit``); ``benefit-tuning``: ``results/benefit_tuning/summary.json``
  (``python -m experiments.group_benefit --tuning``);
* ``speed-headline`` (README): ``results/benchmarks/training.json``'s speed against the
  reference;
* ``benchmark-<name>``: ``results/benchmarks/<name>.json`` (``python -m benchmarks.run <name>
  --save results/benchmarks``), with the command and the machine that measured it;
* ``appendix-b-table``: ``docs/appendix_b/scores.json`` (``python -m experiments.appendix_b``);
* ``same-budget-*``: ``results/same_budget/summary.json`` (``python -m
  experiments.same_budget_report``) and, for the 16-channel rows, the ``results.json`` of runs
  under ``results/settings_search/``; ``same-budget-headline`` is the README's results table.

The pages are ``README.md`` and every ``docs/**/*.md``; a page holds any of the markers (each
at most once), and ``tests/test_doc_tables.py`` checks that regenerating reproduces every block
exactly, so a hand edit of a generated table fails the tests. Tables whose numbers no committed
summary holds stay typed, with a note under them saying so.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Callable, Iterable, Optional, Sequence

from experiments import group_benefit, identification
from experiments.same_budget import SAME_BUDGET
from experiments.spec import REPO_ROOT
from experiments.tables import (markdown_rows as _table, markers, read_between, read_records,
                               write_into)

IDENTIFICATION_SUMMARY = "results/identification/summary.json"
GROUP_BENEFIT_SUMMARY = "results/group_benefit/summary.json"
BENEFIT_TUNING_SUMMARY = "results/benefit_tuning/summary.json"
# The benchmarks whose saved tables (results/benchmarks/<name>.json) the docs show.
SAVED_BENCHMARKS = ("sinkhorn", "models", "training", "profile", "conv_limit", "step_cost",
                    "augmentation", "layer_scaling", "conv_paths", "compute_dtype",
                    "time_to_group", "xla_cpu_flags")
APPENDIX_B_SCORES = "docs/appendix_b/scores.json"
SAME_BUDGET_SUMMARY = f"results/{SAME_BUDGET.name}/summary.json"
SETTINGS_SEARCH = "results/settings_search"
TUNING_PASSES = "results/identification/tuning_passes"
BENCHMARK_RESULTS = "results/benchmarks"


def _load(root: str, relative: str):
  with open(os.path.join(root, relative), encoding="utf-8") as handle:
    return json.load(handle)


def _records(root: str, relative: str) -> list[dict]:
  """The per-run records of a study's ``summary.json`` (``tables.read_records``)."""
  return read_records(os.path.join(root, relative))


# --------------------------------------------------------------------------------------------
# The group-identification table and the App. B table
# --------------------------------------------------------------------------------------------
def identification_table(root: str) -> str:
  """``experiments.identification.table`` of the committed per-run records."""
  return identification.table(_records(root, IDENTIFICATION_SUMMARY))


def benefit_table(root: str) -> str:
  """``experiments.group_benefit.table`` of the committed per-run records."""
  return group_benefit.table(_records(root, GROUP_BENEFIT_SUMMARY))


def benefit_tuning(root: str) -> str:
  """``experiments.group_benefit.tuning_table`` of the committed per-run records."""
  return group_benefit.tuning_table(_records(root, BENEFIT_TUNING_SUMMARY))


def benefit_curves(root: str) -> str:
  """``experiments.group_benefit.curves_table`` of the committed per-run records."""
  return group_benefit.curves_table(_records(root, GROUP_BENEFIT_SUMMARY))


def _wide_vector_flags(machine: dict) -> list[str]:
  """A recorded machine's AVX-512 and AMX flags (``provenance.cpu_description``)."""
  return [f for f in machine.get("cpu_flags") or [] if f.startswith(("avx512", "amx"))]


def _machine(provenance: dict) -> str:
  machine = provenance.get("machine", {})
  flags = _wide_vector_flags(machine)
  kind = "AVX-512 (" + ", ".join(flags) + ")" if flags else "no AVX-512"
  return (f"{machine.get('cpu_model', '?')}, {kind}; jax "
          f"{provenance.get('packages', {}).get('jax', '?')}, commit "
          f"{(provenance.get('git', {}).get('commit') or '?')[:7]}")


def benchmark_table(name: str) -> Callable[[str], str]:
  """The table of ``results/benchmarks/<name>.json`` (``benchmarks.run --save``), with the
  command and the machine that measured it."""
  from benchmarks.run import markdown_table  # pylint: disable=import-outside-toplevel

  def make(root: str) -> str:
    record = _load(root, f"{BENCHMARK_RESULTS}/{name}.json")
    return (markdown_table(record) + f"\n*`{record['command']}` on "
            f"{_machine(record['provenance'])}.*\n")
  make.__doc__ = f"The saved ``{name}`` benchmark's table."
  return make


def speed_headline(root: str) -> str:
  """The README's speed row: each MNIST model's step against the reference's
  (``results/benchmarks/training.json``), with the measuring CPU and the command."""
  record = _load(root, f"{BENCHMARK_RESULTS}/training.json")
  speed = {row["model"]: row.get("speedup") for row in record["rows"] if row.get("augment")}
  machine = record["provenance"].get("machine", {})
  cpu = (f"{machine.get('cpu_model', '?')}, "
         f"{'AVX-512' if _wide_vector_flags(machine) else 'no AVX-512'}")
  cells = [f"{speed[m]:.2f}×" if isinstance(speed.get(m), float) else "–"
           for m in ("cnn", "gcnn", "wscnn")]
  return (_table(("CPU (2 cores)", "cnn", "gcnn", "wscnn"), [[cpu, *cells]])
          + f"\n*`{record['command']}` (its provenance: `{BENCHMARK_RESULTS}/training.json`)*\n")


def identification_headline(root: str) -> str:
  """``experiments.identification.headline`` of the committed per-run records."""
  return identification.headline(_records(root, IDENTIFICATION_SUMMARY))


# The passes of the identification settings search, in order: the per-run records of each (its
# summary), what it scored and the settings it ran with (the records hold the answers, not the
# settings). The last pass ran the recipe's settings; its runs are the identification summary's
# tuning grid: seeds 0 and 1 chose them; seeds 2-4 ran with them after the choice (a check
# on the rest of the tuning split, its own row). None: every seed of the summary. The probes
# before the first pass have no records (a note under the table).
_CHOSEN = "β 0.02, warm-up 300, lr 1e-1"
TUNING_PASS_SETTINGS = (
    (f"{TUNING_PASSES}/1_readout_b0.02_w100/summary.json", "averaged readout",
     "β 0.02, warm-up 100", None),
    (f"{TUNING_PASSES}/2_readout_b0.01_w150/summary.json", "averaged readout",
     "β 0.01, warm-up 150", None),
    (f"{TUNING_PASSES}/3_element_b0.02_w150/summary.json", "per element",
     "β 0.02, warm-up 150, lr 5e-2", None),
    (IDENTIFICATION_SUMMARY, "per element", _CHOSEN, (0, 1)),
    (IDENTIFICATION_SUMMARY, "per element", f"{_CHOSEN} (run after the choice)", (2, 3, 4)),
)


def _tuning_pass_row(records: Sequence[dict], score: str, settings: str,
                     only_seeds: Optional[Sequence[int]] = None) -> Optional[list[str]]:
  """One settings-search pass (its runs of ``only_seeds``, or all): its seeds and variants
  (and any pair not run), how many runs named the data's subgroup exactly, and every other
  answer; None when it has no run."""
  runs = [r for r in records
          if r["grid"] == identification.IDENTIFICATION_TUNING.name and r["status"] == "done"
          and (only_seeds is None or r["seed"] in only_seeds)]
  if not runs:
    return None
  seeds = sorted({r["seed"] for r in runs})
  data = [d for d in identification.DATA if any(r["data"] == d for r in runs)]
  variants = f"{len(data)} variants"
  if len(data) < len(identification.DATA):
    variants += ": " + ", ".join(data)
  ran = {(r["data"], r["seed"]) for r in runs}
  missing = [f"{d} seed {seed}" for d in data for seed in seeds if (d, seed) not in ran]
  if missing:
    variants += f"; {', '.join(missing)} not run"
  exact = sum(r["score"] == "exact" for r in runs)
  wrong = [f"`{r['data']}`, seed {r['seed']}: {r['answer'] or 'undecided'}"
           + (f" at step {r['step']}" if r["answer"] and r["step"] is not None else "")
           for r in runs if r["score"] != "exact"]
  return [score, settings, f"{', '.join(map(str, seeds))} ({variants})",
          f"{exact} of {len(runs)}", "; ".join(wrong) or "none"]


def identification_tuning_passes(root: str) -> str:
  """The identification settings search, one row per pass (:data:`TUNING_PASS_SETTINGS`)."""
  rows = [_tuning_pass_row(_records(root, path), score, settings, seeds)
          for path, score, settings, seeds in TUNING_PASS_SETTINGS]
  return _table(("score", "settings", "seeds", "right", "what went wrong"),
                [row for row in rows if row is not None])


APPENDIX_B_LABELS = {
    "shift": ("(a)", "16 cyclic shifts (1-D, 16)"),
    "shift_partial": ("(b)", "shifts 0–7 sampled (1-D, 16)"),
    "c8": ("(c)", "C8, interpolated (7×7)"),
    "cube": ("(d)", "24 cube rotations (3×3×3)"),
    "c4xc4": ("(e)", "C4×C4 vs C4×C4×C4 basis (3×3×3)"),
}


def appendix_b_table(root: str) -> str:
  """One row per App. B problem of ``docs/appendix_b/scores.json`` (score in bold when ≥ 0.9)."""
  scores = _load(root, APPENDIX_B_SCORES)
  rows = []
  for name, (letter, group) in APPENDIX_B_LABELS.items():
    if name not in scores:
      continue
    s = scores[name]
    score = f"{s['score']:.2f}"
    rows.append([f"{letter} `{name}`", group, str(s["signals"]),
                 f"**{score}**" if s["score"] >= 0.9 else score,
                 f"{s['max_coefficient_mean']:.3f}", f"{s['aligned']:.2f}",
                 f"{s['train_seconds']:.0f} s"])
  return _table(("problem", "group (grid)", "signals", "score", "mean largest coefficient",
                 "aligned", "time (3 restarts)"), rows)


# --------------------------------------------------------------------------------------------
# The same-budget study (docs/learning_the_group.md)
# --------------------------------------------------------------------------------------------
def _pct(value: Optional[float], sign: str = "") -> str:
  return "" if value is None else f"{100 * value:.1f}{sign}"


def _distance(value: float) -> str:
  if value == 0:
    return "0"
  if value < 0.01:
    return f"{value:.0e}"
  return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _at(curve: list[dict], epochs: float, tolerance: float = 0.01) -> Optional[dict]:
  """The evaluation nearest to ``epochs`` within ``tolerance`` (quarter epochs fall on whole
  steps: 234/937 is 0.2497)."""
  near = [p for p in curve if p.get("epochs") is not None
          and abs(p["epochs"] - epochs) <= tolerance]
  return min(near, key=lambda p: abs(p["epochs"] - epochs)) if near else None


def _accuracy_at(run: dict, epochs: float, sign: str = "") -> str:
  point = _at(run["curve"], epochs)
  return _pct(point and point["test_accuracy"], sign)


def lifting_text(row: dict, run: dict) -> str:
  """What a same-budget run's lifting stack was: fixed, rounded, or learned (its nearest group
  at the end and its distance to C4 at the first evaluation and at the end)."""
  model = row["config"].rsplit(":", 1)[-1]
  if model == "gcnn":
    return "C4, fixed"
  if model == "cnn":
    return "—"
  if run.get("rounded_at") is not None:
    group = next((p["group"] for p in run["curve"] if p.get("rounded")), None) or "a group"
    return f"{group}, rounded at step {run['rounded_at']:,}"
  measured = [p for p in run["curve"] if p.get("distance_C4") is not None]
  if not measured:
    return "not measured"
  first, last = measured[0], measured[-1]
  group = last.get("group")
  to_c4 = (f"distance to C4: {_distance(first['distance_C4'])} at step {first['step']:,}, "
           f"{_distance(last['distance_C4'])} at the end")
  if group in (None, "none", "C4"):
    text = f"{'C4' if group == 'C4' else 'no group'} ({to_c4})"
  else:
    text = f"{group}, {_distance(last['group_distance'])} from it at the end ({to_c4})"
  # The committed summary records the grid's overrides under the names of its day.
  if {"discovery.when_within", "discover_when_within"} & set(row.get("overrides", {})):
    text += ", never rounded"
  return text


def _runs(summary: dict, name: str, seeds: Optional[Sequence[str]] = None):
  row = summary.get(name)
  if row is None:
    return []
  return [(row, seed, run) for seed, run in row["seeds"].items()
          if seeds is None or seed in seeds]


# The README's headline rows: summary row → (label, in bold: the accuracy and a rounded row's
# group).
HEADLINE_ROWS = {
    "gcnn": ("`gcnn` (exact C4, the reference's mask and init)", True),
    "power_blend_discover": ("`power_blend_discover`: learned, rounded to its discovered G-CNN "
                             "once it committed, retrained", True),
    "power_blend": ("`power_blend`: the same, never rounded", False),
    "cnn": ("`cnn` (64 channels, no group)", False),
    "wscnn_paper": ("`wscnn_paper`: the paper's `wscnn` and settings", False),
}


def _headline_lifting(row: dict, runs: Sequence[dict], bold: bool) -> str:
  """A headline row's lifting stack over its seeds: fixed, none, the group it was rounded to
  and the step of each seed's rounding, or (learned, never rounded) the group it ended nearest
  with its mean distance at the end."""
  model = row["config"].rsplit(":", 1)[-1]
  if model in ("gcnn", "cnn"):
    return "C4, fixed" if model == "gcnn" else "—"
  if all(run.get("rounded_at") is not None for run in runs):
    groups = {next((p["group"] for p in run["curve"] if p.get("rounded")), None) or "a group"
              for run in runs}
    found = f"{' / '.join(sorted(groups))}, found from data"
    steps = ", ".join(f"{run['rounded_at']:,}" for run in runs)
    return (f"**{found}**" if bold else found) + f" at step{'s' if len(runs) > 1 else ''} {steps}"
  measured = [[p for p in run["curve"] if p.get("group_distance") is not None] for run in runs]
  if not all(measured):
    return "not measured"
  ends = [points[-1] for points in measured]
  groups = {end.get("group") or "none" for end in ends}
  if groups == {"none"}:
    distance = sum(end["distance_C4"] for end in ends) / len(ends)
    return f"no group ({distance:.2f} from C4)"
  if len(groups) == 1:
    distance = sum(end["group_distance"] for end in ends) / len(ends)
    return f"{groups.pop()} (distance {distance:.3f} at the end)"
  return ", ".join(end.get("group") or "no group" for end in ends)


def same_budget_headline(root: str) -> str:
  """The README's results table (:func:`headline_table`) of the committed summary."""
  return headline_table(_load(root, SAME_BUDGET_SUMMARY))


def headline_table(summary: dict) -> str:
  """Each :data:`HEADLINE_ROWS` row of a same-budget ``summary``: its seeds with an evaluation
  at the last epoch, their mean test accuracy there (each seed's in brackets) and the lifting
  stack."""
  rows = []
  for name, (label, bold) in HEADLINE_ROWS.items():
    row = summary.get(name)
    if row is None:
      continue
    epochs = row["overrides"].get("num_epochs", 2)
    runs = [run for _, run in sorted(row["seeds"].items(), key=lambda item: int(item[0]))
            if _at(run["curve"], epochs) is not None]
    if not runs:
      continue
    accuracies = [100 * _at(run["curve"], epochs)["test_accuracy"] for run in runs]
    mean = f"{sum(accuracies) / len(accuracies):.1f}%"
    accuracy = f"**{mean}**" if bold else mean
    if len(runs) > 1:
      accuracy += " (" + ", ".join(f"{value:.1f}" for value in accuracies) + ")"
    rows.append([label, str(len(runs)), accuracy, _headline_lifting(row, runs, bold)])
  return _table(("model", "seeds", "test accuracy", "lifting stack"), rows)


def same_budget_accuracy(root: str) -> str:
  """Q1: test accuracy every quarter epoch of the compared rows, every seed run."""
  summary = _load(root, SAME_BUDGET_SUMMARY)
  marks = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
  rows = []
  for name, label, bold in (("gcnn", "`gcnn` (exact C4)", True),
                            ("power_blend_discover", "`power_blend_discover`", True),
                            ("power_blend", "`power_blend` (not rounded)", False),
                            ("cnn", "`cnn` (no group)", False),
                            ("wscnn_paper", "`wscnn_paper` (the paper's model and settings)",
                             False)):
    for index, (row, seed, run) in enumerate(_runs(summary, name)):
      cells = [_accuracy_at(run, mark) for mark in marks]
      if bold and cells[-1]:
        cells[-1] = f"**{cells[-1]}**"
      rows.append([label if index == 0 else f"`{name}`", seed, *cells, lifting_text(row, run)])
  return _table(("row", "seed", "0.25", "0.5", "0.75", "1", "1.5", "2 epochs", "lifting stack"),
                rows)


def same_budget_discovered(root: str) -> str:
  """Q2: the learned ``power_blend`` network against its discovered G-CNN at every kept
  checkpoint, and the rounded runs' invariance."""
  summary = _load(root, SAME_BUDGET_SUMMARY)
  rows = []
  for _, seed, run in _runs(summary, "power_blend"):
    for entry in run.get("discovered") or []:
      if entry.get("is_group"):
        rows.append([f"`power_blend` seed {seed}, step {entry['step']:,}",
                     f"{100 * entry['learned_accuracy']:.2f}%",
                     f"{entry['group']}: {100 * entry['discovered_accuracy']:.2f}%",
                     f"{entry['invariance_error']:.1e}"])
  for _, seed, run in _runs(summary, "power_blend_discover"):
    rounded = [e for e in run.get("discovered") or [] if e.get("rounded_in_training")]
    if rounded:
      rows.append([f"`power_blend_discover` seed {seed}, {len(rounded)} checkpoints from the "
                   f"rounding (step {run['rounded_at']:,}) on",
                   "— (it is its own discovered G-CNN)", "as in Q1",
                   f"≤ {max(e['invariance_error'] for e in rounded):.1e}"])
  return _table(("run", "learned network", "its discovered G-CNN",
                 "largest relative change of the logits under 90°, 180°, 270° rotations"), rows)


def same_budget_ablation(root: str) -> str:
  """Q4: the generator's constraint (seed 0)."""
  summary = _load(root, SAME_BUDGET_SUMMARY)
  rows = []
  for name, label in (("power_blend", "isometry blend (`power_blend`)"),
                      ("power_blend_discover",
                       "… rounded once it commits, retrained (`power_blend_discover`)"),
                      ("ablation_sinkhorn", "free doubly stochastic (`ablation_sinkhorn`)"),
                      ("ablation_softmax", "row-stochastic (`ablation_softmax`)"),
                      ("ablation_none", "unconstrained (`ablation_none`)"),
                      ("gcnn", "fixed exact C4 (`gcnn`)")):
    for row, _, run in _runs(summary, name, ("0",)):
      rows.append([label, *(_accuracy_at(run, mark, "%") for mark in (0.25, 0.5, 2.0)),
                   lifting_text(row, run)])
  return _table(("generator (seed 0)", "0.25 epoch", "0.5 epoch", "2 epochs", "lifting stack"),
                rows)


def _settings_run(root: str, name: str) -> Optional[dict]:
  path = os.path.join(root, SETTINGS_SEARCH, name, "results.json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as handle:
    return json.load(handle)


def _settings_label(results: dict) -> str:
  config = results["config"]
  return (f"{config['model_options']['channels']} ch, {results['step']} steps, "
          f"{config['limit_test'] // 1000}k test images")


def _settings_lifting(results: dict) -> str:
  lift = (results.get("learned_symmetry") or {}).get("convs/0")
  if not lift:
    return "—"
  group = lift.get("group")
  return (f"{'no group' if group in (None, 'none') else group} (distance to C4: "
          f"{_distance(lift['distance_C4'])} at the end)")


def same_budget_no_rotations(root: str) -> str:
  """Q5: the recipe on data without rotations (seed 0), and the 16-channel ``powers`` runs of
  the settings search."""
  summary = _load(root, SAME_BUDGET_SUMMARY)
  marks = (0.25, 0.5, 1.0, 2.0)
  rows = []
  for name in ("unrotated_best", "scaled_best"):
    for row, _, run in _runs(summary, name, ("0",)):
      rows.append([row["setting"], f"`{name}` (`power_blend_discover`)",
                   *(_accuracy_at(run, mark, "%") for mark in marks), lifting_text(row, run)])
  for name, data in (("pwz_unrot", "No rotations"), ("pwz_scaled", "Scaling")):
    results = _settings_run(root, name)
    if results is not None:
      rows.append([data, f"`powers`, {_settings_label(results)} (`settings_search/{name}`)",
                   "", "", "", _pct(results["final_test_accuracy"], "%"),
                   _settings_lifting(results)])
  return _table(("data", "row", "0.25", "0.5", "1", "2 epochs", "lifting stack"), rows)


def same_budget_factorised(root: str) -> str:
  """Q7: factorised group layers with free factors (seed 0), best final accuracy first."""
  summary = _load(root, SAME_BUDGET_SUMMARY)
  labels = {"kronecker": "`kronecker`", "wscnn_cpu": "`wscnn_cpu` (unfactorised)",
            "tied_shared": "`tied_shared`",
            "tied_cayley_iso": "`tied_cayley_iso` (+ isometry prior)", "tied": "`tied`",
            "tied_cayley": "`tied_cayley`"}
  found = [(label, row, run) for name, label in labels.items()
           for row, _, run in _runs(summary, name, ("0",))]
  found.sort(key=lambda item: -(item[2]["curve"][-1]["test_accuracy"] if item[2]["curve"]
                                else 0.0))
  rows = [[label, *(_accuracy_at(run, mark, "%") for mark in (0.25, 0.5, 1.0, 2.0)),
           lifting_text(row, run)] for label, row, run in found]
  return _table(("row (32 channels, CPU settings, seed 0)", "0.25", "0.5", "1", "2 epochs",
                 "lifting stack"), rows)


def same_budget_gcnn_init(root: str) -> str:
  """Q8: the G-CNN with and without the reference's disk mask and init (seed 0), and the
  16-channel pair of the settings search."""
  summary = _load(root, SAME_BUDGET_SUMMARY)
  rows = []
  for name, label in (("gcnn", "`gcnn` (disk mask, `se2cnn` init), 32 channels"),
                      ("gcnn_plain",
                       "`gcnn_plain` (no mask, the weight-sharing init), 32 channels")):
    for _, _, run in _runs(summary, name, ("0",)):
      rows.append([label, *(_accuracy_at(run, mark, "%") for mark in (0.5, 1.0, 2.0))])
  for name, label in (("gcnn16", "`gcnn16` (mask and init)"), ("gcnn16_plain", "`gcnn16_plain`")):
    results = _settings_run(root, name)
    if results is not None:
      rows.append([f"{label}, {_settings_label(results)}", "", "",
                   _pct(results["final_test_accuracy"], "%")])
  return _table(("row (seed 0)", "0.5 epoch", "1 epoch", "2 epochs"), rows)


# --------------------------------------------------------------------------------------------
# The blocks, and the command
# --------------------------------------------------------------------------------------------
BLOCKS: dict[str, Callable[[str], str]] = {
    identification.MARKER: identification_table,
    identification.HEADLINE_MARKER: identification_headline,
    "identification-tuning-passes": identification_tuning_passes,
    group_benefit.MARKER: benefit_table,
    group_benefit.CURVES_MARKER: benefit_curves,
    group_benefit.TUNING_MARKER: benefit_tuning,
    **{f"benchmark-{name}": benchmark_table(name) for name in SAVED_BENCHMARKS},
    "speed-headline": speed_headline,
    "appendix-b-table": appendix_b_table,
    "same-budget-headline": same_budget_headline,
    "same-budget-accuracy": same_budget_accuracy,
    "same-budget-discovered": same_budget_discovered,
    "same-budget-ablation": same_budget_ablation,
    "same-budget-no-rotations": same_budget_no_rotations,
    "same-budget-factorised": same_budget_factorised,
    "same-budget-gcnn-init": same_budget_gcnn_init,
}


def pages(root: str = REPO_ROOT) -> list[str]:
  """``README.md`` and every ``docs/**/*.md`` under ``root`` (absolute paths, sorted)."""
  found = sorted(glob.glob(os.path.join(root, "docs", "**", "*.md"), recursive=True))
  readme = os.path.join(root, "README.md")
  return ([readme] if os.path.exists(readme) else []) + found


def placements(root: str = REPO_ROOT) -> list[tuple[str, str]]:
  """``(page, marker)`` for every block of :data:`BLOCKS` that a page holds."""
  found = []
  for page in pages(root):
    with open(page, encoding="utf-8") as handle:
      content = handle.read()
    found += [(page, marker) for marker in BLOCKS if markers(marker)[0] in content]
  return found


def _blocks(root: str):
  """``(page, marker, text)`` for every generated block in the pages, ``text`` what the
  committed summaries give (each marker's text made once)."""
  texts: dict[str, str] = {}
  for page, marker in placements(root):
    if marker not in texts:
      texts[marker] = BLOCKS[marker](root)
    yield page, marker, texts[marker]


def stale(root: str = REPO_ROOT) -> list[str]:
  """``"<page>: <marker>"`` for every generated block whose text differs from what the
  committed summaries give (empty when every block is as generated)."""
  return [f"{os.path.relpath(page, root)}: {marker}" for page, marker, text in _blocks(root)
          if read_between(page, marker) != text]


def write_all(root: str = REPO_ROOT) -> list[str]:
  """Rewrites every generated block that differs from what the committed summaries give;
  returns ``"<page>: <marker>"`` for each (pages whose blocks are current are not touched)."""
  changed = []
  for page, marker, text in _blocks(root):
    if read_between(page, marker) != text:
      write_into(page, marker, text)
      changed.append(f"{os.path.relpath(page, root)}: {marker}")
  return changed


def main(argv: Optional[Iterable[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="change nothing; exit 1 if a generated block differs")
  parser.add_argument("--root", default=REPO_ROOT, help="the repository root")
  args = parser.parse_args(list(argv) if argv is not None else None)
  if args.check:
    differing = stale(args.root)
    for line in differing:
      print(f"differs from the committed summaries: {line}", file=sys.stderr)
    if differing:
      print("regenerate with: python -m experiments.doc_tables", file=sys.stderr)
    return 1 if differing else 0
  for line in write_all(args.root):
    print(f"rewrote {line}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
