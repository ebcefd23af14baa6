"""Symmetry discovery on a toy problem (in the spirit of the paper's App. B), in seconds on a CPU.

A teacher lifting layer with an exact group (C4, D4, flip, C2) maps random images to
``[B, H, W, C, G]`` feature maps: each output is the image correlated with the canonical
kernels transformed by every group element. A student ``WSLiftConv`` with learned doubly
stochastic stacks (identity fixed, the others from Sinkhorn of free logits) and its own kernels
is fitted to the teacher's outputs by mean squared error. Nothing tells the student which
transformations exist: it has to find them. ``ds_symmetry.analysis`` then says which group the
learned stack became and how far it is from it.

  python -m experiments.discover_symmetry --group=C4
  python -m experiments.discover_symmetry --group=D4 --steps=800

With ``--hypothesis=subgroups`` the student is instead an ``nn.SubgroupSelector`` (the
hypothesis space: the ten subgroups of D4) over a small MLP, and the teacher an exactly
``group``-invariant classifier: a random linear map averaged over the group, ``label(x) =
argmax_k mean_{h∈group} (W·vec(h·x))_k`` on Gaussian ``7×7`` images (whose distribution is
invariant to every isometry, so the labels alone carry the symmetry). The selector must name
``group`` among the ten:

  python -m experiments.discover_symmetry --hypothesis=subgroups --group=D2_diagonal
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

import ds_symmetry  # noqa: F401  (fast CPU convolution flag, before jax starts)

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ds_symmetry import analysis, ops, toy_problems
from ds_symmetry.nn import SubgroupSelector, WSLiftConv


def discover(group: str = "C4", *, kernel_size: int = 5, channels: int = 8, steps: int = 500,
             batch: int = 32, image_size: int = 16, learning_rate: float = 1e-2,
             logits_learning_rate: float = 5e-2, norm_weight: float = 0.1,
             logits_init: str = "balanced_uniform", seed: int = 0) -> dict:
  """Fits a learned lifting layer to an exact one; returns losses and the learned-stack
  analysis (a JSON-serialisable dict)."""
  num_elements = ops.group_order(group)
  teacher = WSLiftConv(1, channels, kernel_size, group=group, use_bias=False,
                       rngs=nnx.Rngs(seed + 1))
  student = WSLiftConv(1, channels, kernel_size, num_elements=num_elements, use_bias=False,
                       logits_init=logits_init, rngs=nnx.Rngs(seed))

  def loss_fn(student, key):
    x = jax.random.normal(key, (batch, image_size, image_size, 1))
    target = teacher(x)
    mse = jnp.mean((student(x) - target) ** 2) / jnp.mean(target ** 2)
    return mse + norm_weight * student.regularizers()["norm"], mse

  history = toy_problems.fit(student, loss_fn, steps, learning_rate=learning_rate,
                             logits_learning_rate=logits_learning_rate, seed=seed,
                             record_every=max(1, steps // 10))
  stack = student.representation_stack()
  summary = analysis.summarize_stack(stack, kernel_size, "lift")
  match = analysis.distance_to_group(stack, group, kernel_size, "lift")
  return {"group": group, "steps": steps, "relative_mse": history,
          "identified": summary["group"], "distance_to_planted_group": match.mean_distance,
          "assignment": [int(a) for a in match.assignment], "summary": summary}


def _flatten(x):
  return x.reshape(x.shape[0], -1)


@functools.lru_cache(maxsize=None)
def _subgroup_loss(batch: int, image_size: int):
  """The loss of :func:`identify_subgroup`, one function per shape (so its jitted step compiles
  once for every group): the teacher's group enters as ``weights [8]``, ``1/|H|`` on its
  elements."""
  def loss_fn(student, key, teacher, weights):
    x = jax.random.normal(key, (batch, image_size, image_size, 1))
    views = jnp.stack([ops.apply_element("D4", g, x, axes=(1, 2)).reshape(batch, -1)
                       for g in range(8)])
    labels = jnp.argmax(jnp.einsum("g,gbk->bk", weights, views @ teacher), axis=-1)
    return student.objective(x, labels)[0], ()
  return loss_fn


def identify_subgroup(group: str = "C4", *, image_size: int = 7, hidden: int = 128,
                      steps: int = 300, batch: int = 256, learning_rate: float = 3e-3,
                      selection_learning_rate: float = 0.1, size_prior: float = 0.05,
                      warmup_steps: int = 100, within: float = 0.05, seed: int = 0,
                      stop_when_committed: bool = False) -> dict:
  """Fits a ``SubgroupSelector`` over an MLP to a ``group``-invariant linear teacher; returns
  the chosen subgroup, its probability and the step it committed at (``1 − max q ≤ within``;
  ``None`` if never), JSON-serialisable. ``stop_when_committed`` ends training there."""
  if group not in ops.D4_SUBGROUPS:
    raise ValueError(f"group: {group!r} is not accepted; expected one of {ops.D4_SUBGROUPS}")
  teacher = jax.random.normal(jax.random.key(seed + 1), (image_size * image_size, 10))
  weights = jnp.zeros(8).at[jnp.asarray(ops.d4_elements(group))].set(
      1.0 / ops.group_order(group))                       # the teacher averages over the group
  rngs = nnx.Rngs(seed)
  backbone = nnx.Sequential(_flatten, nnx.Linear(image_size * image_size, hidden, rngs=rngs),
                            nnx.relu, nnx.Linear(hidden, 10, rngs=rngs))
  student = SubgroupSelector(backbone, size_prior=size_prior, warmup_steps=warmup_steps)
  committed_at = None

  def committed(index: int) -> bool:
    nonlocal committed_at
    if committed_at is None and student.committed_subgroup(within) is not None:
      committed_at = index + 1
      return stop_when_committed
    return False

  toy_problems.fit(student, _subgroup_loss(batch, image_size), steps,
                   learning_rate=learning_rate, logits_learning_rate=selection_learning_rate,
                   seed=seed, args=(teacher, weights), stop=committed)
  q = np.asarray(student.probabilities())
  return {"group": group, "identified": student.candidates[int(np.argmax(q))],
          "probability": float(q.max()), "committed_at": committed_at, "steps": steps,
          "probabilities": dict(zip(student.candidates, q.round(4).tolist()))}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--group", default="C4",
                      choices=ops.group_names(spatial_dims=2, permutation=True))
  parser.add_argument("--hypothesis", default="stack", choices=("stack", "subgroups"),
                      help="stack: a learned lifting stack fitted to an exact lifting layer; "
                           "subgroups: a SubgroupSelector fitted to an invariant classifier")
  parser.add_argument("--steps", type=int, default=500)
  parser.add_argument("--kernel_size", type=int, default=5)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
  args = parser.parse_args(argv)
  if args.hypothesis == "subgroups":
    if args.group not in ops.D4_SUBGROUPS:
      parser.error(f"--group: {args.group!r} is not a subgroup of D4; expected one of "
                   f"{ops.D4_SUBGROUPS}")
    result = identify_subgroup(args.group, steps=args.steps, seed=args.seed)
    print(json.dumps(result, indent=1) if args.json else
          f"planted {result['group']}; identified {result['identified']} (q = "
          f"{result['probability']:.3f}, committed at step {result['committed_at']})")
    return 0
  if args.group == "trivial":
    parser.error("--group: 'trivial' has nothing to discover with --hypothesis=stack")
  result = discover(args.group, steps=args.steps, kernel_size=args.kernel_size, seed=args.seed)
  if args.json:
    print(json.dumps(result, indent=1))
    return 0
  for index, mse in result["relative_mse"]:
    print(f"step {index:5d}  relative MSE {mse:.4f}")
  print(f"planted {result['group']}; identified: {result['identified']} "
        f"(mean distance to {result['group']}: {result['distance_to_planted_group']:.4f}; "
        f"learned element i ~ group element {result['assignment']})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
