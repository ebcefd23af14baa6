"""Tabulate and plot the same-budget study, and evaluate every learned run's discovered G-CNN.

  python -m experiments.same_budget_report --root=results [--no-discover] [--out=docs/figures]

For each run ``<root>/same_budget/<row>/seed<k>`` (done or still running) it reads the
quarter-epoch evaluations from ``metrics.jsonl`` (test accuracy; for learned models the lifting
stack's nearest group and its distance, and the distance to C4). For learned runs it then
loads every kept checkpoint, rounds the network to its discovered G-CNN
(``ds_symmetry.discovery.discover_gcnn``) and measures that model's test accuracy and its
invariance error under 90° rotations; results are cached in ``<run>/discovered.json``, each
entry with the digest of the checkpoint it was measured on, so an entry whose checkpoint has
changed (a run started over) is measured again; entries of checkpoints no longer on this
machine are kept (checkpoints are not committed, their results are). A run the trainer itself
rounded (``discovery.when_within`` / ``discovery.at_step``) is its discovered G-CNN from that
step on: its checkpoints from there are measured as they are, and its curve reports the
rounded group at distance 0.

Writes ``<root>/same_budget/summary.json`` (every curve, every seed) and two figures
(``same_budget_accuracy.png``, ``same_budget_distance.png``) into ``--out``, and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional

import numpy as np

from ds_symmetry import run_files
from experiments import tables
from experiments.same_budget import ROTATED_SETTING, SAME_BUDGET
from experiments.spec import run_path

def _evals(workdir: str) -> list[dict]:
  # a resumed run may repeat a step: keep the last record of each
  records = run_files.read_metrics(workdir, "eval")
  return sorted({r["step"]: r for r in records}.values(), key=lambda r: r["step"])


def _rounding(workdir: str) -> Optional[dict]:
  """The record of the trainer's own discovery (``discovery.at_step`` /
  ``discovery.when_within``) in ``workdir``, or None when the run was never rounded while
  training."""
  discovered = run_files.load_discovered(workdir)
  if discovered is not None:
    return discovered[1]
  # a clone: the stacks archive is not committed, results.json holds the same record
  return (run_files.read_results(workdir) or {}).get("discovery")


def curve(workdir: str, rounding: Optional[dict] = None) -> list[dict[str, Any]]:
  """One point per evaluation: epochs, test accuracy, and the lifting stack's group. From the
  step a run was rounded to its discovered G-CNN on, its lifting stack is that group's exact
  permutations (distance 0; ``rounded``). ``rounding``: the run's :func:`_rounding` record."""
  points = []
  for record in _evals(workdir):
    lifting = (record.get("layers") or {}).get("convs/0", {})
    point = {
        "step": record["step"],
        "epochs": record.get("epochs_done", record.get("epoch")),
        "test_accuracy": record["test_accuracy"],
        "group": lifting.get("group"),
        "group_distance": lifting.get("group_distance"),
        "distance_C4": lifting.get("distance_C4"),
    }
    if rounding is not None and record["step"] >= rounding["step"]:
      point.update(group=rounding["group"], group_distance=0.0, rounded=True,
                   distance_C4=0.0 if rounding["group"] == "C4" else None)
    points.append(point)
  return points


def _accuracy(model, images: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
  import jax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  forward = nnx.jit(lambda m, x: m(x).argmax(-1))
  correct = 0
  for start in range(0, len(images), batch):
    predicted = forward(model, jax.numpy.asarray(images[start:start + batch]))
    correct += int(np.sum(np.asarray(predicted) == labels[start:start + batch]))
  return correct / len(images)


def _invariance_error(model, images: np.ndarray) -> float:
  """Largest relative change of the logits when the inputs turn by 90°, 180°, 270°."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  x = jnp.asarray(images[:64])
  y = model(x)
  worst = max(float(jnp.max(jnp.abs(model(jnp.rot90(x, t, axes=(1, 2))) - y)))
              for t in (1, 2, 3))
  return worst / float(jnp.max(jnp.abs(y)))


def discovered_curve(workdir: str, rounding: Optional[dict] = None) -> list[dict[str, Any]]:
  """The discovered G-CNN at every kept checkpoint of a learned run (cached); ``rounding``: the
  run's :func:`_rounding` record (its checkpoints from that step on are measured as they are)."""
  # pylint: disable=import-outside-toplevel
  from ds_symmetry.data import make_protocol
  from ds_symmetry.discovery import discover_gcnn
  from ds_symmetry.train import load_model
  from ds_symmetry.train.checkpointing import checkpoint_digest
  cache_path = run_files.path(workdir, run_files.DISCOVERED_CURVE)
  cache = run_files.read_json(cache_path, strict=False) or {}
  checkpoint_dir = run_files.path(workdir, run_files.CHECKPOINTS)
  steps = run_files.checkpoint_steps(workdir)
  protocol = None
  for step in steps:
    digest = checkpoint_digest(checkpoint_dir, step)
    if cache.get(str(step), {}).get("checkpoint_sha256") == digest:
      continue
    model, config, _ = load_model(workdir, step)
    if protocol is None:
      protocol = make_protocol(config.protocol, data_dir=config.get("data_dir"),
                               seed=config.seed, **config.protocol_options.to_dict())
    if rounding is not None and step >= rounding["step"]:
      # rounded while training: this checkpoint already is the discovered G-CNN
      accuracy = _accuracy(model, protocol.test_images, protocol.test_labels)
      cache[str(step)] = {"group": rounding["group"], "is_group": rounding["is_group"],
                          "projection_distance": 0.0, "learned_accuracy": accuracy,
                          "discovered_accuracy": accuracy, "rounded_in_training": True,
                          "invariance_error": _invariance_error(model, protocol.test_images),
                          "checkpoint_sha256": digest}
      run_files.write_json(cache_path, cache, indent=1)
      continue
    found = discover_gcnn(model, require_group=False)
    # The study rounds a stack only to a group of as many distinct elements as it has slots.
    is_group = found.discovery.is_group and found.discovery.distinct
    entry = {"group": found.discovery.group if is_group else None, "is_group": is_group,
             "projection_distance": float(np.mean(found.discovery.projection_distances)),
             "learned_accuracy": _accuracy(model, protocol.test_images, protocol.test_labels)}
    if is_group:
      entry["discovered_accuracy"] = _accuracy(found.model, protocol.test_images,
                                               protocol.test_labels)
      entry["invariance_error"] = _invariance_error(found.model, protocol.test_images)
    entry["checkpoint_sha256"] = digest
    cache[str(step)] = entry
    run_files.write_json(cache_path, cache, indent=1)
  return [dict(step=int(step), **entry) for step, entry in sorted(
      cache.items(), key=lambda item: int(item[0]))]


def collect(root: str, discover: bool = True) -> dict[str, Any]:
  """Every row's runs: ``{row: {"label", "seeds": {seed: {"curve", "discovered"}}}}``."""
  summary = {}
  grid_dir = os.path.join(root, SAME_BUDGET.name)
  # the grid's default seeds and any others run with --seeds
  seeds_run = sorted(tables.seeds_on_disk(grid_dir, SAME_BUDGET.rows))
  for row in SAME_BUDGET.rows:
    seeds = {}
    for seed in seeds_run:
      workdir = run_path(root, SAME_BUDGET.name, row.name, seed)
      if not os.path.exists(run_files.path(workdir, run_files.METRICS)):
        continue
      rounding = _rounding(workdir)
      entry = {"curve": curve(workdir, rounding),
               "done": os.path.exists(run_files.path(workdir, run_files.RESULTS)),
               "rounded_at": None if rounding is None else rounding["step"]}
      learned = row.config.endswith(":wscnn")
      if discover and learned and entry["done"]:
        entry["discovered"] = discovered_curve(workdir, rounding)
      seeds[str(seed)] = entry
    if seeds:
      summary[row.name] = {"label": row.label, "setting": row.setting,
                           "config": row.config, "overrides": dict(row.overrides),
                           "seeds": seeds}
  return summary


def _at(points: list[dict], epochs: float, tolerance: float = 0.01) -> Optional[dict]:
  """The evaluation nearest to ``epochs`` (quarter epochs fall on whole steps: 234/937 is
  0.2497), if one is within ``tolerance`` epochs."""
  near = [p for p in points if p["epochs"] is not None and abs(p["epochs"] - epochs) <= tolerance]
  return min(near, key=lambda p: abs(p["epochs"] - epochs)) if near else None


def markdown(summary: dict[str, Any]) -> str:
  marks = (0.25, 0.5, 1.0, 1.5, 2.0)
  lines = ["| row | seed | " + " | ".join(f"{m:g} ep" for m in marks)
           + " | lifting stack at the end (distance to C4) | discovered G-CNN |",
           "|---|---|" + "---|" * len(marks) + "---|---|"]
  for name, row in summary.items():
    for seed, run in row["seeds"].items():
      cells = []
      for mark in marks:
        point = _at(run["curve"], mark)
        cells.append(f"{100 * point['test_accuracy']:.1f}" if point else "")
      last = run["curve"][-1] if run["curve"] else {}
      group = ""
      if last.get("distance_C4") is not None:
        group = f"{last.get('group') or 'none'} ({last['distance_C4']:.2f})"
      if run.get("rounded_at") is not None:
        group += f", rounded at step {run['rounded_at']}"
      discovered = ""
      if run.get("discovered"):
        final = run["discovered"][-1]
        discovered = (f"{final['group'] or 'not a known group'}: "
                      f"{100 * final['discovered_accuracy']:.1f}% "
                      f"(learned {100 * final['learned_accuracy']:.1f}%, invariance error "
                      f"{final['invariance_error']:.1e})" if final.get("is_group")
                      else "does not round to a group")
      status = "" if run["done"] else " (running)"
      lines.append(f"| {name}{status} | {seed} | " + " | ".join(cells)
                   + f" | {group} | {discovered} |")
  return "\n".join(lines)


# The distance axis stops here: a permutation stack is at most √2 ≈ 1.41 from C4 and the
# uniform start 0.98, so an unconstrained stack that blows up (ablation_none: 388) would flatten
# every other curve; its points are drawn on the top edge as triangles instead.
DISTANCE_AXIS_MAX = 1.6
# seed 0, 1, 2, 3 of a row (its colour and marker are the row's)
SEED_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")


def row_style(index: int) -> dict[str, Any]:
  """Row ``index``'s colour, which no other of the first 20 rows shares (tab20, its dark shades
  first), and one of 10 markers."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  shades = list(range(0, 20, 2)) + list(range(1, 20, 2))
  return {"color": matplotlib.colormaps["tab20"](shades[index % 20]),
          "marker": _MARKERS[index % len(_MARKERS)]}


def clip_to_axis(values: list[float], limit: Optional[float]) -> tuple[list[float], list[bool]]:
  """``values`` with those above ``limit`` put on it, and which were (``limit=None``: none)."""
  if limit is None:
    return list(values), [False] * len(values)
  return [min(value, limit) for value in values], [value > limit for value in values]


def plot(summary: dict[str, Any], out: str) -> list[str]:
  """Accuracy and lifting-stack distance to C4 over training, every row and seed (seed 0
  solid, then dashed, dotted, dash-dotted; rows without rotations in the data say so in the
  legend)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  os.makedirs(out, exist_ok=True)
  paths = []
  for key, ylabel, filename, limit in (
      ("test_accuracy", "test accuracy (%)", "same_budget_accuracy.png", None),
      ("distance_C4", "lifting stack: distance to C4", "same_budget_distance.png",
       DISTANCE_AXIS_MAX)):
    figure, axis = plt.subplots(figsize=(8.5, 5.0))
    scale = 100.0 if key == "test_accuracy" else 1.0
    for index, (name, row) in enumerate(summary.items()):
      style = row_style(index)
      label = (name if row["setting"] == ROTATED_SETTING
               else f"{name} ({row['setting'].lower()})")
      for seed_index, (seed, run) in enumerate(row["seeds"].items()):
        points = [p for p in run["curve"] if p.get(key) is not None]
        if not points:
          continue
        values, off_scale = clip_to_axis([scale * p[key] for p in points], limit)
        epochs = [p["epochs"] for p in points]
        axis.plot(epochs, values, color=style["color"], marker=style["marker"], markersize=4,
                  linestyle=SEED_LINESTYLES[seed_index % len(SEED_LINESTYLES)],
                  label=(label + (" (off scale)" if any(off_scale) else "")
                         if seed_index == 0 else None))
        if any(off_scale):
          axis.scatter([e for e, off in zip(epochs, off_scale) if off], [limit] * sum(off_scale),
                       color=style["color"], marker="^", s=60, clip_on=False, zorder=3)
    if limit is not None:
      axis.set_ylim(0.0, limit)
      axis.axhline(0.5, color="gray", linewidth=0.8, linestyle=":")
    axis.set_xlabel("epochs")
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axis.grid(alpha=0.3)
    figure.tight_layout()
    path = os.path.join(out, filename)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    paths.append(path)
  return paths


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--root", default="results")
  parser.add_argument("--out", default="docs/figures")
  parser.add_argument("--no-discover", action="store_true",
                      help="skip loading checkpoints for the discovered G-CNN")
  args = parser.parse_args(argv)
  summary = collect(args.root, discover=not args.no_discover)
  if not summary:
    print(f"no same_budget runs under {args.root!r}", file=sys.stderr)
    return 1
  path = os.path.join(args.root, SAME_BUDGET.name, "summary.json")
  run_files.write_json(path, summary, indent=1)
  print(markdown(summary))
  for figure in plot(summary, args.out):
    print(f"wrote {figure}")
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
