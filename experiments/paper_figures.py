"""The paper's figures, regenerated from the outputs of a training run (one command).

  python -m experiments.paper_figures WORKDIR [--out=DIR] [--group=C4]

``WORKDIR`` is what ``python -m ds_symmetry.main --config=... --workdir=WORKDIR`` writes. From
its ``stacks.npz`` (the learned stacks at the last evaluation), ``metrics.jsonl``, and the
newest checkpoint (for the lifting kernels), it writes to ``DIR`` (default
``WORKDIR/paper_figures``):

* ``fig3_lifting_stack.png``: the learned lifting stack (top) beside the exact permutations
  of ``--group`` it is closest to, element by element (bottom) — the paper's Fig. 3;
* ``fig2_lifting_kernels.png``: the canonical lifting kernels under each learned element
  (rows: elements, columns: output channels) — Fig. 2;
* ``fig9_10_<layer>.png``: each learned group-convolution stack beside the shift-twist
  representation of ``--group`` — Figs. 9–10;
* ``training_curves.png``: train loss per logged step and test accuracy per evaluation.

Figures whose inputs are missing (no learned lifting layer, no checkpoint, no group layers)
are skipped with a message. The paper's figures come from 100 epochs; a short run shows the
same panels with stacks that are still far from the group.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

import numpy as np

from ds_symmetry import analysis, ops, run_files
from ds_symmetry.report import load_stacks


def _assigned_reference(stack, name: str, kernel_size: int, kind: str):
  """The group's exact representations reordered to match the learned elements."""
  match = analysis.distance_to_group(stack, name, kernel_size, kind)
  reps = np.asarray(analysis.group_representations(name, kernel_size, kind))
  return reps[match.covering_assignment], match.covering_mean


def _lifting_weight(workdir: str, layer: str) -> Optional[np.ndarray]:
  """``[C_out, C_in, k²]`` weights of ``layer`` in the newest checkpoint's model, or None."""
  if not os.path.isdir(run_files.path(workdir, run_files.CHECKPOINTS)):
    return None
  from ds_symmetry.nn import weight_sharing_layers  # pylint: disable=import-outside-toplevel
  from ds_symmetry.train import load_model  # pylint: disable=import-outside-toplevel
  try:
    model, _, _ = load_model(workdir)
  except FileNotFoundError:
    return None
  layers = dict(weight_sharing_layers(model))
  return np.asarray(layers[layer].weight[...]) if layer in layers else None


def make_figures(workdir: str, out: Optional[str] = None, group: str = "C4") -> list[str]:
  """Writes the figures; returns their paths."""
  out = out or os.path.join(workdir, "paper_figures")
  stacks, meta = load_stacks(workdir)
  layers = meta["layers"]
  written = []
  lifts = [name for name, info in layers.items() if info["kind"] == "lift" and info["learned"]]
  groups = [name for name, info in layers.items() if info["kind"] == "group" and info["learned"]]
  order = ops.group_order(group)
  if lifts:
    name = lifts[0]
    stack, k = stacks[name], layers[name]["kernel_size"]
    if stack.shape[0] >= order:
      reference, distance = _assigned_reference(stack, group, k, "lift")
      written.append(str(analysis.plot_stack_against(
          stack, reference, os.path.join(out, "fig3_lifting_stack.png"),
          title=f"{name}: learned lifting stack vs {group} (mean distance {distance:.2f})",
          labels=("learned", group))))
    weight = _lifting_weight(workdir, name)
    if weight is not None:
      written.append(str(analysis.plot_kernel_orbit(
          weight, stack, os.path.join(out, "fig2_lifting_kernels.png"))))
    else:
      print(f"fig. 2 skipped: no checkpoint with {name}/weight in {workdir}")
  else:
    print("figs. 2-3 skipped: the run has no learned lifting layer")
  for name in groups:
    stack, k = stacks[name], layers[name]["kernel_size"]
    if stack.shape[0] != order:
      print(f"figs. 9-10 skipped for {name}: {stack.shape[0]} elements, {group} has {order}")
      continue
    reference, distance = _assigned_reference(stack, group, k, "group")
    written.append(str(analysis.plot_stack_against(
        stack, reference, os.path.join(out, f"fig9_10_{name.replace('/', '_')}.png"),
        title=f"{name}: learned group-conv stack vs {group} shift-twist "
              f"(mean distance {distance:.2f})", labels=("learned", "shift-twist"))))
  records = run_files.read_metrics(workdir)
  if records:
    written.append(str(analysis.plot_training_curves(
        records, os.path.join(out, "training_curves.png"), title=os.path.basename(
            os.path.abspath(workdir)))))
  return written


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdir")
  parser.add_argument("--out", default=None)
  parser.add_argument("--group", default="C4",
                      choices=ops.group_names(spatial_dims=2, permutation=True))
  args = parser.parse_args(argv)
  for path in make_figures(args.workdir, args.out, args.group):
    print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
