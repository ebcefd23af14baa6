"""The paper's App. B toy problems: which transformations does a single learned layer find?

Five problems (data from ``ds_symmetry.toy_problems``; the paper gives no sizes, noise, targets
or optimiser, so these are ours, chosen to run in under a minute each on a 2-core CPU):

=================  ==========  ===========  ========================================  ========
problem            group       grid         sampled elements                          basis
=================  ==========  ===========  ========================================  ========
``shift``          shift16     16 (1-D)     all 16 cyclic shifts                      shift16
``shift_partial``  shift16     16 (1-D)     the first half (shifts 0–7)               shift16
``c8``             C8          7×7          all 8 rotations by 45° (interpolated)     C8
``cube``           cube        3×3×3        all 24 rotations of the cube              cube
``c4xc4``          C4xC4       3×3×3        all 16 layer turns                        C4xC4xC4
=================  ==========  ===========  ========================================  ========

Each problem: ``C`` random canonical signals (32 for the shifts, 16 otherwise; unit variance,
smoothed once for C8), inputs ``x = ρ(g)·x̂_c + ε`` with ``ε ~ N(0, 0.01²)``, and the
equivariant target ``y = ρ_y(g)·ŷ_c`` with ``ŷ_c`` the response of an exact lifting layer with
16 random kernels (``target="teacher"``). The model is one ``WSLiftConv`` with 16 channels,
``|G|`` elements (identity fixed, the others Sinkhorn of free logits, ``balanced_uniform``
init) and a kernel covering the grid, so its output is ``[16, |G|]``. Loss: relative MSE
+ 0.1 × the norm regulariser, + 1e-3 × the entropy regulariser from 60% of the steps on (it
pushes the last few percent of spread-out mass onto one element). Adam, learning rate 1e-2 for
the kernels and 2e-2 for the logits (5e-2 stalls on a blurred stack), 1000 steps, each on every
(signal, sampled element) pair with fresh noise; three restarts from different initialisations,
keeping the lowest final training loss (see :func:`run`).

Analysis: every learned element ``R_h`` (the fixed identity excluded) is written as a convex
combination of the basis group's representations (``analysis.convex_decomposition``); the
*score* is the fraction of learned elements whose largest coefficient is ≥ 0.9 on a true
element of their own (distinct, and not the identity, which the fixed element already holds).

  python -m experiments.appendix_b --problem=all --out=docs/appendix_b
  python -m experiments.appendix_b --problem=cube --steps=2000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Optional, Sequence

import ds_symmetry  # noqa: F401  (fast CPU convolution flag, before jax starts)

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ds_symmetry import analysis, ops, toy_problems
from ds_symmetry.nn import WSLiftConv


@dataclasses.dataclass(frozen=True)
class Problem:
  """One App. B problem: the data, the analysis basis and the training budget."""
  group: str
  kernel_size: int
  num_signals: int
  steps: int
  basis: Optional[str] = None                 # analysis group (default: ``group``)
  elements: Optional[Sequence[int]] = None    # sampled elements (default: all)
  smoothing: int = 0
  noise: float = 0.01
  task: str = "equivariant"
  target: str = "teacher"
  teacher_channels: int = 16
  description: str = ""


PROBLEMS = {
    "shift": Problem("shift16", 16, 32, 1000, description="1-D signal, all 16 cyclic shifts"),
    "shift_partial": Problem("shift16", 16, 32, 1000, elements=tuple(range(8)),
                             description="1-D signal, only the first half of the shifts"),
    "c8": Problem("C8", 7, 16, 1000, smoothing=1,
                  description="2-D signal, 8 rotations by 45° (interpolated)"),
    "cube": Problem("cube", 3, 16, 1000, description="3-D voxel grid, the cube's 24 rotations"),
    "c4xc4": Problem("C4xC4", 3, 16, 1000, basis="C4xC4xC4",
                     description="3×3×3 grid, C4×C4 layer turns, analysed against C4×C4×C4"),
}


def train(problem: Problem, *, steps: Optional[int] = None, seed: int = 0,
          init_seed: Optional[int] = None, batch: Optional[int] = None,
          learning_rate: float = 1e-2, logits_learning_rate: float = 2e-2,
          norm_weight: float = 0.1, entropy_weight: float = 1e-3, entropy_from: float = 0.6,
          sinkhorn_tau: float = 1.0):
  """Fits the single-layer model; returns ``(layer, history)``, history a list of
  ``(step, relative MSE, accuracy)`` on the training batches (accuracy: how often the largest
  output is at the target's largest entry). ``seed`` draws the data (signals, teacher,
  noise); ``init_seed`` (default ``seed``) the layer's initial kernels and logits.
  ``batch=None`` trains on every (signal, sampled
  element) pair per step; an int draws that many random samples instead. The entropy
  regulariser is on from ``entropy_from × steps`` on."""
  toy = toy_problems.make_problem(problem.group, problem.kernel_size, problem.num_signals,
                                  seed=seed, noise=problem.noise, task=problem.task,
                                  elements=problem.elements, smoothing=problem.smoothing,
                                  target=problem.target,
                                  teacher_channels=problem.teacher_channels)
  order, channels = toy.order, toy.num_outputs
  layer = WSLiftConv(1, channels, problem.kernel_size, num_elements=order,
                     spatial_dims=len(toy.grid), use_bias=False, logits_init="balanced_uniform",
                     sinkhorn_tau=sinkhorn_tau,
                     rngs=nnx.Rngs(seed if init_seed is None else init_seed))
  steps = problem.steps if steps is None else steps

  def outputs_of(layer, inputs):
    out = layer(inputs).reshape(inputs.shape[0], channels, order)   # [B, C_out, G]
    return out if problem.task == "equivariant" else jnp.max(out, axis=-1)

  def loss_fn(layer, key, entropy_scale):
    data = (toy_problems.every_pair_batch(toy, key) if batch is None
            else toy_problems.sample_batch(toy, key, batch))
    targets = data["targets"]
    size = targets.shape[0]
    outputs = outputs_of(layer, data["inputs"])
    loss = jnp.mean((outputs - targets) ** 2) / jnp.mean(targets ** 2)   # relative MSE
    flat_out, flat_target = outputs.reshape(size, -1), targets.reshape(size, -1)
    accuracy = jnp.mean(jnp.argmax(flat_out, -1) == jnp.argmax(flat_target, -1))
    terms = layer.regularizers()
    penalty = norm_weight * terms["norm"] + entropy_scale * terms["entropy"]
    return loss + penalty, (loss, accuracy)

  def entropy_scale(index):
    return (jnp.float32(entropy_weight if index >= entropy_from * steps else 0.0),)

  recorded = toy_problems.fit(layer, loss_fn, steps, learning_rate=learning_rate,
                              logits_learning_rate=logits_learning_rate, seed=seed,
                              args=entropy_scale, record_every=max(1, steps // 20))
  return layer, [(index, loss, accuracy) for index, (loss, accuracy) in recorded]


def analyse(problem: Problem, stack) -> dict:
  """Convex decomposition of every element of ``stack`` onto the basis group, and scores."""
  basis_name = problem.basis or problem.group
  basis = ops.spatial_permutations(basis_name, problem.kernel_size)
  coefficients = analysis.convex_decomposition(stack, basis)          # [G, |basis|]
  learned = coefficients[1:]                                          # the identity is fixed
  order = stack.shape[0]
  if basis_name == problem.group:
    correspondence = np.arange(order)
  else:                                                               # C4xC4 inside C4xC4xC4
    correspondence = ops.c4xc4_in_c4xc4xc4()
  identity = int(correspondence[0])
  result = {
      "score": analysis.decomposition_score(learned, 0.9, exclude=(identity,)),
      "max_coefficient_mean": float(np.mean(learned.max(axis=1))),
      # equivariant labels tie learned element h to group element h
      "aligned": float(np.mean(np.argmax(learned, axis=1) == correspondence[1:])),
      "coefficients": coefficients,
  }
  if problem.basis is not None:
    result["mass_on_subgroup"] = float(learned[:, correspondence].sum() / learned.shape[0])
    result["subgroup"] = correspondence
  if problem.elements is not None:
    sampled = np.zeros(coefficients.shape[1], bool)
    sampled[np.asarray(problem.elements)] = True
    labelled = np.asarray([h for h in range(1, order) if sampled[h]]) - 1
    unlabelled = np.asarray([h for h in range(1, order) if not sampled[h]]) - 1
    result["score_sampled_elements"] = analysis.decomposition_score(
        learned[labelled], 0.9, exclude=(identity,))
    result["mass_off_sampled_half_labelled"] = float(
        learned[labelled][:, ~sampled].sum(axis=1).mean())
    result["mass_off_sampled_half_unlabelled"] = float(
        learned[unlabelled][:, ~sampled].sum(axis=1).mean())
    result["mass_off_sampled_half_all"] = float(learned[:, ~sampled].sum(axis=1).mean())
  return result


def run(name: str, *, out: Optional[str] = None, steps: Optional[int] = None,
        seed: int = 0, restarts: int = 3) -> dict:
  """Trains and analyses one problem; writes ``<out>/<name>.json``, ``<name>_coefficients.png``
  and ``<name>_stack.npz`` when ``out`` is given. Returns a JSON-serialisable summary.

  ``restarts`` layers are trained from different initialisations on the same data, and the
  one with the lowest final training loss is kept (selection by the training objective only,
  never by the score): a run can settle on a permutation that differs from the true element in
  a few positions, shared by every element, which another initialisation avoids.
  """
  if name not in PROBLEMS:
    raise ValueError(f"name must be one of {tuple(PROBLEMS)}; got {name!r}")
  if not isinstance(restarts, int) or restarts < 1:
    raise ValueError(f"restarts must be a positive int; got {restarts!r}")
  problem = PROBLEMS[name]
  start = time.perf_counter()
  candidates = [train(problem, steps=steps, seed=seed, init_seed=1000 * seed + restart)
                for restart in range(restarts)]
  restart_losses = [history[-1][1] for _, history in candidates]
  chosen = int(np.argmin(restart_losses))
  layer, history = candidates[chosen]
  train_seconds = time.perf_counter() - start
  stack = np.asarray(layer.representation_stack())
  result = analyse(problem, stack)
  coefficients = result.pop("coefficients")
  subgroup = result.pop("subgroup", None)
  summary = {"problem": name, "description": problem.description, "group": problem.group,
             "basis": problem.basis or problem.group, "grid": problem.kernel_size,
             "signals": problem.num_signals, "steps": problem.steps if steps is None else steps,
             "seed": seed, "restarts": restarts, "restart_losses": restart_losses,
             "chosen_restart": chosen, "train_seconds": round(train_seconds, 1),
             "final_loss": history[-1][1], "final_accuracy": history[-1][2],
             "history": history, **result}
  if out is not None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as handle:
      json.dump(summary, handle, indent=1)
    np.savez_compressed(os.path.join(out, f"{name}_stack.npz"), stack=stack,
                        weight=np.asarray(layer.weight[...]), coefficients=coefficients)
    analysis.plot_decomposition(
        coefficients, os.path.join(out, f"{name}_coefficients.png"),
        title=f"{name}: learned elements on {summary['basis']} (score {result['score']:.2f})",
        highlight=subgroup, column_label=f"{summary['basis']} element")
  return summary


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--problem", default="all", help=f"all or one of {tuple(PROBLEMS)}")
  parser.add_argument("--out", default="results/appendix_b")
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--restarts", type=int, default=3)
  args = parser.parse_args(argv)
  names = tuple(PROBLEMS) if args.problem == "all" else (args.problem,)
  rows = []
  for name in names:
    summary = run(name, out=args.out, steps=args.steps, seed=args.seed,
                  restarts=args.restarts)
    extra = "".join(f"  {key} {summary[key]:.3f}" for key in (
        "mass_on_subgroup", "mass_off_sampled_half_labelled",
        "mass_off_sampled_half_unlabelled") if key in summary)
    print(f"{name:14s} score {summary['score']:.3f}  aligned {summary['aligned']:.3f}  "
          f"accuracy {summary['final_accuracy']:.3f}  {summary['train_seconds']:.0f} s{extra}",
          flush=True)
    rows.append(summary)
  with open(os.path.join(args.out, "scores.json"), "w") as handle:
    json.dump({row["problem"]: {k: v for k, v in row.items() if k != "history"}
               for row in rows}, handle, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
