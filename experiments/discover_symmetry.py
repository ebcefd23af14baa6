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
"""

from __future__ import annotations

import argparse
import json
import sys

import ds_symmetry  # noqa: F401  (fast CPU convolution flag, before jax starts)

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ds_symmetry import analysis, ops
from ds_symmetry.nn import WSLiftConv, parameter_groups


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
  # One optimizer, two parameter groups: the logits get their own learning rate.
  tx = optax.multi_transform({"weights": optax.adam(learning_rate),
                              "logits": optax.adam(logits_learning_rate)},
                             parameter_groups(student))
  optimizer = nnx.Optimizer(student, tx, wrt=nnx.Param)

  @nnx.jit
  def step(student, optimizer, key):
    x = jax.random.normal(key, (batch, image_size, image_size, 1))
    target = teacher(x)

    def loss_fn(student):
      mse = jnp.mean((student(x) - target) ** 2) / jnp.mean(target ** 2)
      return mse + norm_weight * student.regularizers()["norm"], mse
    (_, mse), grads = nnx.value_and_grad(loss_fn, has_aux=True)(student)
    optimizer.update(student, grads)
    return mse

  key = jax.random.key(seed)
  history = []
  for index in range(steps):
    mse = step(student, optimizer, jax.random.fold_in(key, index))
    if index % max(1, steps // 10) == 0 or index == steps - 1:
      history.append((index, float(mse)))
  stack = student.representation_stack()
  summary = analysis.summarize_stack(stack, kernel_size, "lift")
  match = analysis.distance_to_group(stack, group, kernel_size, "lift")
  return {"group": group, "steps": steps, "relative_mse": history,
          "identified": summary["group"], "distance_to_planted_group": match.mean_distance,
          "assignment": [int(a) for a in match.assignment], "summary": summary}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--group", default="C4", choices=[g for g in ops.group_names(spatial_dims=2, permutation=True)
                                                         if g != "trivial"])
  parser.add_argument("--steps", type=int, default=500)
  parser.add_argument("--kernel_size", type=int, default=5)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
  args = parser.parse_args(argv)
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
