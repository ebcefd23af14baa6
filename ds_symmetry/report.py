"""``python -m ds_symmetry.report WORKDIR``: the learned-symmetry report of a training run.

Reads ``WORKDIR/stacks.npz`` (written at every evaluation) and, when present,
``results.json`` / ``metrics.jsonl``; prints per learned layer the nearest group, its distance,
the distance of every comparable group, and the approximate Cayley-table error
(``ds_symmetry.analysis.summarize_stack``). For a run rounded to its discovered G-CNN
(``discovered_stacks.npz``) it says when and to which group, and judges both the learned
stacks just before the rounding and the exact ones it was rounded to. For a run that diverged
it says at which step and why, and what to change (the same config diverges again).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from ds_symmetry import run_files

# A workdir file the report needs is unreadable or inconsistent with the others.
ReportError = run_files.UnreadableRunFile


def load_stacks(workdir: str) -> tuple[dict[str, np.ndarray], dict]:
  """``({layer: stack [G, d, d]}, meta)`` from ``workdir/stacks.npz``.

  Raises ``FileNotFoundError`` if it is missing and :class:`ReportError` if it is unreadable.
  """
  loaded = run_files.load_stacks(workdir)
  if loaded is None:
    raise FileNotFoundError(f"{run_files.path(workdir, run_files.STACKS)} not found: is "
                            f"{workdir!r} the workdir of a run that has finished at least one "
                            f"evaluation?")
  return loaded


def load_results(workdir: str) -> dict | None:
  """``workdir/results.json`` as a dict, ``None`` if absent; :class:`ReportError` if unreadable
  or without the fields the report shows."""
  results = run_files.read_results(workdir)
  if results is None:
    return None
  try:
    for key in ("model", "protocol"):
      results[key]  # pylint: disable=pointless-statement
    int(results["parameters"]["representation"])
  except (ValueError, KeyError, TypeError) as error:
    raise ReportError(f"{run_files.path(workdir, run_files.RESULTS)} is unreadable "
                      f"({type(error).__name__}: {error}); it may be truncated: rerun the "
                      f"training command to rewrite it") from error
  return results


def format_report(workdir: str) -> str:
  """The learned-symmetry report of the run in ``workdir`` as text (one line per layer and
  finding); raises ``FileNotFoundError`` or ``ReportError`` naming a missing or damaged file."""
  results = load_results(workdir)
  if results is not None and results.get("stages"):  # discovery.then_train: two runs
    return _two_stage_report(workdir, results)
  diverged = results is not None and results.get("status") == "diverged"
  has_stacks = os.path.exists(run_files.path(workdir, run_files.STACKS))
  if has_stacks or results is None:
    stacks, meta = load_stacks(workdir)
    before = ", the last evaluation before the divergence" if diverged else ""
    lines = [f"Learned-symmetry report: {os.path.abspath(workdir)} "
             f"(stacks at step {meta['step']}{before})"]
  elif diverged:  # diverged before its first evaluation: no stacks were ever written
    stacks, meta = {}, {"layers": {}}
    lines = [f"Learned-symmetry report: {os.path.abspath(workdir)} (no stacks: the run "
             f"diverged before its first evaluation)"]
  elif results["parameters"]["representation"] > 0 or results.get("learned_symmetry"):
    raise ReportError(
        f"{run_files.path(workdir, run_files.STACKS)} is missing, but results.json says model "
        f"{results['model']!r} has learned layers; rerun the training command to rewrite it")
  else:  # a finished run of a model without weight-sharing layers writes no stacks
    stacks, meta = {}, {"layers": {}}
    lines = [f"Learned-symmetry report: {os.path.abspath(workdir)}"]
  discovered = run_files.load_discovered(workdir)
  stopped = (results is not None and discovered is not None
             and results.get("step") == discovered[1]["step"]
             and bool((results.get("config") or {}).get("discovery", {}).get("stop_after")))
  if results is not None:
    untrained = " (the rounded model, untrained: the run ended there)" if stopped else ""
    lines.append(
        f"model {results['model']} on {results['protocol']}: final test accuracy "
        f"{_pct(results.get('final_test_accuracy'))}{untrained}, best "
        f"{_pct(results.get('best_test_accuracy'))} (epoch {results.get('best_epoch')}); "
        f"parameters {results['parameters']['free']:,} free"
        f" + {results['parameters']['representation']:,} representation")
  if diverged:
    lines.append(divergence_line(results))
  learned = {name: stacks[name] for name in stacks if meta["layers"][name]["learned"]}
  if discovered is not None:
    lines += _discovery_lines(workdir, discovered, meta["layers"], stopped)
  elif not learned and not (diverged and not stacks):
    lines.append("no learned weight-sharing layers (exact or plain model)")
  if learned:
    lines += _stack_table(learned, meta["layers"])
  if learned or (discovered is not None and discovered[0]):
    lines.append("nearest: the identified group, or (closest candidate) when none is within "
                 "the threshold; distance ‖R − P‖_F/√d; Cayley err: max error of the "
                 "approximate Cayley table")
  return "\n".join(lines)


def divergence_line(results: dict) -> str:
  """What a diverged run's ``results.json`` says, on one line: where it diverged, why, the
  last finite checkpoint, and what to change (the same config diverges again)."""
  config = results.get("config") or {}
  step = results.get("diverged_at_step", results.get("step"))
  kept = results.get("last_checkpoint_step")
  resumes = (f"resumes from its checkpoint at step {kept} and diverges again"
             if kept is not None else "starts over and diverges again")
  settings = ", ".join(f"{name} {config[name]}" for name in ("learning_rate", "grad_clip_norm")
                       if name in config)
  return (f"DIVERGED at step {step}: {results.get('divergence') or 'non-finite values'}; "
          f"training stopped there (last finite checkpoint: "
          f"{'none' if kept is None else f'step {kept}'}). Training is deterministic: the same "
          f"config {resumes}. Train it in a new workdir with a smaller config.learning_rate "
          f"or config.grad_clip_norm > 0" + (f" (this run: {settings})" if settings else ""))


def _stack_table(stacks: dict[str, np.ndarray], layers: dict) -> list[str]:
  """One line per stack (``[G, d, d]``): its nearest group, distances, Cayley-table error."""
  from ds_symmetry.analysis import summarize_stack  # pylint: disable=import-outside-toplevel
  header = f"{'layer':<24} {'kind':<6} {'G':>2} {'d':>4}  {'nearest':<8} {'distance':>8}  " \
           f"{'Cayley err':>10}  other groups"
  lines = [header, "-" * len(header)]
  for name, stack in stacks.items():
    info = layers[name]
    summary = summarize_stack(stack, info["kernel_size"], info["kind"])
    nearest = summary["group"] if summary["group"] != "none" else f"({summary['best_candidate']})"
    others = ", ".join(f"{k[len('distance_'):]} {v:.3f}" for k, v in summary.items()
                       if k.startswith("distance_"))
    lines.append(f"{name:<24} {info['kind']:<6} {summary['stack_size']:>2} {summary['dim']:>4}  "
                 f"{nearest:<8} {summary['group_distance']:>8.4f}  "
                 f"{summary['cayley_max_error']:>10.4f}  {others}")
  return lines


def _two_stage_report(workdir: str, results: dict) -> str:
  """``discovery.then_train``: what the identification named, then each stage's report."""
  found, stages = results["discovery"], results["stages"]
  trained = stages["trained"]
  what = "CNN" if trained["model"] == "cnn" else f"{found['group']} G-CNN"
  lines = [f"Identify, then train: {os.path.abspath(workdir)}",
           f"identified {found['group']} at step {found['step']}, then its {what} trained "
           f"{trained['step']} steps from fresh weights: final test accuracy "
           f"{_pct(trained.get('final_test_accuracy'))}", ""]
  for name, title in (("identify", "stage 1, identification"),
                      ("trained", f"stage 2, the {what}")):
    lines += [f"{title}:", format_report(os.path.join(workdir, name)), ""]
  return "\n".join(lines).rstrip("\n")


def _discovery_lines(workdir: str, discovered: tuple[dict, dict], layers: dict,
                     stopped: bool = False) -> list[str]:
  """What a run rounded to its discovered G-CNN found: the record, the learned stacks just
  before the rounding and the exact stacks it has trained with since, each judged afresh
  (``stopped``: the run ended at the rounding, ``discovery.stop_after``)."""
  frozen, record = discovered
  missing = sorted(set(frozen) - set(layers))
  if missing:
    raise ReportError(f"{run_files.path(workdir, run_files.DISCOVERED_STACKS)} has stacks for "
                      f"{missing}, which {run_files.STACKS} does not know: the two files are "
                      f"from different runs; rerun the training command")
  how = record.get("trigger", "discovery.at_step")
  weights = "weights re-drawn" if record.get("reinitialized") else "weights kept"
  accuracy = (f"test accuracy {_pct(record.get('test_accuracy_before'))} just before, "
              f"{_pct(record.get('test_accuracy_after'))} after")
  probabilities = record.get("subgroup_probabilities")
  if probabilities:  # a subgroup selector: its distribution over subgroups, largest first
    top = sorted(probabilities.items(), key=lambda item: -item[1])[:3]
    evidence = "subgroup probabilities " + ", ".join(f"{k} {v:.3f}" for k, v in top)
  else:
    evidence = "element distances to their permutations " + ", ".join(
        f"{d:.3f}" for d in record.get("projection_distances", []))
  model = ("its backbone expanded into the discovered group's G-CNN"
           if record.get("expanded_backbone") else
           "its backbone averaged over the discovered group" if record.get("kept_backbone")
           else "its discovered G-CNN")
  lines = [f"rounded to {model} at step {record['step']} ({how}; {weights}): "
           f"{record['group']}", f"  {evidence}; {accuracy}"]
  learned = run_files.load_learned_at_discovery(workdir)
  if learned:
    lines.append(f"the learned stacks just before the rounding (step {record['step']}):")
    lines += _stack_table({k: v for k, v in learned.items() if k in layers}, layers)
  if frozen:
    lines.append("the exact stacks it rounded to (the run ended there, discovery.stop_after):"
                 if stopped else "the exact stacks it has trained with since:")
    lines += _stack_table(frozen, layers)
  elif stopped:
    lines.append("the run ended at the commitment (discovery.stop_after)")
  elif record.get("expanded_backbone"):  # discovery.expand_backbone
    rate = record.get("learning_rate")
    lines.append(f"trained since as the exact {record['group']} G-CNN started from the "
                 "selector's backbone (models.gcnn_from_cnn: its filters on the identity "
                 "slices)" + (f", learning rate {rate:g}" if rate else ""))
  elif record.get("kept_backbone"):  # discovery.keep_backbone: the selector's own backbone
    lines.append(f"trained since as the selector's backbone averaged over {record['group']} "
                 f"(nn.GroupAveraged, exactly {record['group']}-invariant)")
  else:  # no learned stacks to freeze: the G-CNN's group layers come from the registry
    lines.append(f"trained since as the exact {record['group']} G-CNN (no learned stacks)")
  return lines


def _pct(value):
  return "n/a" if value is None else f"{100 * value:.2f}%"


def main(argv=None) -> int:
  """``python -m ds_symmetry.report WORKDIR``: prints the report; returns the exit status
  (1 with a one-line error for a missing or damaged run)."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdir")
  args = parser.parse_args(argv)
  try:
    print(format_report(args.workdir))
  except (FileNotFoundError, ReportError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
