"""Why the learned C4 network trails the G-CNN: the checks of docs/learning_the_group.md §9.

  python -m experiments.lag_diagnostics [--root=results]

1. Same network: a ``wscnn`` with ``power_blend`` lifting, ``tied_cyclic`` group layers and its
   generator on the 90° rotation, given a ``gcnn``'s weights, computes the ``gcnn``'s outputs
   (prints the largest absolute difference on random inputs; 8 channels).
2. Right gradients: the hand-written CPU backward passes against JAX's on that model (largest
   relative difference over every parameter's gradient).
3. Optimizer statistics: the root mean of Adam's second-moment estimate of the lifting weights
   at steps 234 and 468 of ``<root>/same_budget/{gcnn,power_blend}/seed0`` (needs those runs'
   checkpoints, which are not committed; runs without them are skipped).
"""

from __future__ import annotations

import argparse
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ds_symmetry.models import create_model
from ds_symmetry.nn import weight_sharing_layers
from ds_symmetry.ops.gradients import custom_gradients

BEST = dict(sharing="tied_cyclic", elements="power_blend", constraint="isometries",
            kernel_mask="disk", weight_init="se2cnn")
_LIFT_NU = re.compile(r"nu\W.*convs\W+0\W+weight")


def same_network(channels: int = 8) -> tuple[float, float]:
  """``(largest |learned − gcnn| output difference, largest |gcnn output|)``."""
  gcnn = create_model("gcnn", num_classes=10, rngs=nnx.Rngs(0), channels=channels)
  learned = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=channels, **BEST)
  nnx.update(learned, nnx.state(gcnn, nnx.Param))  # every weight; the learned logits stay
  lift = weight_sharing_layers(learned)[0][1]
  lift.logits[...] = jnp.full(lift.logits[...].shape, -1e4).at[0, 1].set(0.0)  # 90° rotation
  x = jax.random.normal(jax.random.key(0), (4, 28, 28, 1))
  return float(jnp.abs(learned(x) - gcnn(x)).max()), float(jnp.abs(gcnn(x)).max())


def gradient_difference(channels: int = 8) -> float:
  """Largest relative difference between hand-written and JAX gradients, per parameter."""
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=channels, **BEST)
  lift = weight_sharing_layers(model)[0][1]
  lift.logits[...] = jnp.full(lift.logits[...].shape, -8.0).at[0, 1].set(0.0)
  graphdef, state = nnx.split(model)
  x, y = jax.random.normal(jax.random.key(0), (8, 28, 28, 1)), jnp.arange(8) % 10

  def loss(state):
    logits = nnx.merge(graphdef, state)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  grads = []
  for enabled in (True, False):
    with custom_gradients(enabled):
      grads.append(jax.tree.leaves(jax.grad(loss)(state)))
  return max(float(jnp.abs(a - b).max() / (jnp.abs(b).max() + 1e-30))
             for a, b in zip(*grads))


def lifting_adam_rms(workdir: str, step: int) -> float | None:
  """Root mean of Adam's ν for the lifting weights in the checkpoint at ``step``, if any."""
  from ds_symmetry.train.checkpointing import read_checkpoint  # pylint: disable=import-outside-toplevel
  try:
    _, arrays = read_checkpoint(os.path.join(workdir, "checkpoints"), step)
  except (FileNotFoundError, ValueError):
    return None
  for path, value in jax.tree_util.tree_flatten_with_path(arrays)[0]:
    if _LIFT_NU.search(jax.tree_util.keystr(path)) and np.ndim(value) == 3:
      return float(np.sqrt(np.mean(value)))
  return None


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--root", default="results")
  args = parser.parse_args(argv)
  difference, scale = same_network()
  print(f"same network: largest output difference {difference:.3g} (outputs up to {scale:.3g})")
  print(f"hand-written vs JAX gradients: largest relative difference {gradient_difference():.2g}")
  for row in ("gcnn", "power_blend"):
    workdir = os.path.join(args.root, "same_budget", row, "seed0")
    for step in (234, 468):
      rms = lifting_adam_rms(workdir, step)
      print(f"{row} step {step}: lifting weights' Adam RMS "
            f"{'no checkpoint' if rms is None else f'{rms:.2g}'}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
