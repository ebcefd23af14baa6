"""The documentation's tables that come from committed summaries, generated and never typed.

  python -m experiments.doc_tables            # rewrite every generated block in the pages
  python -m experiments.doc_tables --check    # exit 1, naming each block that differs

A generated block lies between ``<!-- <marker>:start -->`` and ``<!-- <marker>:end -->`` in a
page (``experiments.tables.write_into``); :data:`BLOCKS` maps each marker to the function that
makes its text from the committed summaries under the repository root:

* ``identification-table``: ``results/identification/summary.json`` (the table
  ``python -m experiments.identification report`` writes);
* ``appendix-b-table``: ``docs/appendix_b/scores.json`` (``python -m experiments.appendix_b``);
* ``same-budget-*``: ``results/same_budget/summary.json`` (``python -m
  experiments.same_budget_report``) and, for the 16-channel rows, the ``results.json`` of runs
  under ``results/settings_search/``.

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

from experiments import identification
from experiments.same_budget import SAME_BUDGET
from experiments.spec import REPO_ROOT
from experiments.tables import markers, read_between, write_into

IDENTIFICATION_SUMMARY = "results/identification/summary.json"
APPENDIX_B_SCORES = "docs/appendix_b/scores.json"
SAME_BUDGET_SUMMARY = f"results/{SAME_BUDGET.name}/summary.json"
SETTINGS_SEARCH = "results/settings_search"


def _load(root: str, relative: str):
  with open(os.path.join(root, relative), encoding="utf-8") as handle:
    return json.load(handle)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The group-identification table and the App. B table
# --------------------------------------------------------------------------------------------
def identification_table(root: str) -> str:
  """``experiments.identification.table`` of the committed per-run records."""
  return identification.table(_load(root, IDENTIFICATION_SUMMARY))


def identification_headline(root: str) -> str:
  """``experiments.identification.headline`` of the committed per-run records."""
  return identification.headline(_load(root, IDENTIFICATION_SUMMARY))


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
    "appendix-b-table": appendix_b_table,
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


def stale(root: str = REPO_ROOT) -> list[str]:
  """``"<page>: <marker>"`` for every generated block whose text differs from what the
  committed summaries give (empty when every block is as generated)."""
  texts: dict[str, str] = {}
  out = []
  for page, marker in placements(root):
    if marker not in texts:
      texts[marker] = BLOCKS[marker](root)
    if read_between(page, marker) != texts[marker]:
      out.append(f"{os.path.relpath(page, root)}: {marker}")
  return out


def write_all(root: str = REPO_ROOT) -> list[str]:
  """Rewrites every generated block that differs from what the committed summaries give;
  returns ``"<page>: <marker>"`` for each (pages whose blocks are current are not touched)."""
  texts: dict[str, str] = {}
  changed = []
  for page, marker in placements(root):
    if marker not in texts:
      texts[marker] = BLOCKS[marker](root)
    if read_between(page, marker) != texts[marker]:
      write_into(page, marker, texts[marker])
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
