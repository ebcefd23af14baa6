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
4. Kernel isotropy: for every layer, the share of its canonical kernels' norm that is
   invariant under C4 (``c4_invariant_share``), at initialisation and at step 234 of both
   runs (same checkpoints). Kernels trained while the lifting stack was a blur of rotations
   are closer to rotation-invariant, so fewer of their features tell orientations apart.
5. Rounded run = ``gcnn``: the ``power_blend_discover`` run's model as its rounding rebuilt it
   (its discovered stacks, the weights its seed first drew) against the ``gcnn`` row's initial
   model: largest differences of the initial weights, the stacks, the outputs and the
   gradients on random inputs (needs only the committed ``config.json`` and
   ``discovered_stacks.npz`` of both runs).
"""

from __future__ import annotations

import argparse
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ds_symmetry import run_files
from ds_symmetry.models import create_model
from ds_symmetry.nn import weight_sharing_layers
from ds_symmetry.ops.gradients import custom_gradients
from experiments.same_budget import SAME_BUDGET
from experiments.spec import run_path

BEST = dict(factorise="kronecker", tie="cyclic", elements="power_blend",
            constraint="isometries", kernel_mask="disk", weight_init="se2cnn")
_LIFT_NU = re.compile(r"nu\W.*convs\W+0\W+weight")


def seed0(root: str, row: str) -> str:
  """The workdir of ``row``'s seed-0 run of the same-budget grid under ``root``."""
  return run_path(root, SAME_BUDGET.name, row, 0)


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
    _, arrays = read_checkpoint(run_files.path(workdir, run_files.CHECKPOINTS), step)
  except (FileNotFoundError, ValueError):
    return None
  for path, value in jax.tree_util.tree_flatten_with_path(arrays)[0]:
    if _LIFT_NU.search(jax.tree_util.keystr(path)) and np.ndim(value) == 3:
      return float(np.sqrt(np.mean(value)))
  return None


def c4_invariant_share(weight: np.ndarray, kernel_size: int) -> float:
  """``‖mean_t T^t w‖ / ‖w‖`` for canonical kernels ``w`` ``[C_out, C_in, n·k²]``.

  ``T`` turns each ``k × k`` kernel plane by 90°; for a group layer (``n = 4`` input elements)
  it also shifts the input-element axis by one (either direction: the larger share is
  returned, as a learned labelling may run either way). 1 for a kernel ``T`` leaves unchanged,
  about 0.5 for i.i.d. random kernels, 0 for one whose four turns cancel.
  """
  w = np.asarray(weight, np.float64)
  w = w.reshape(w.shape[0], w.shape[1], -1, kernel_size, kernel_size)
  shares = []
  for direction in (1, -1):
    average = sum(np.roll(np.rot90(w, t, axes=(-2, -1)), direction * t, axis=2)
                  for t in range(4)) / 4
    shares.append(float(np.linalg.norm(average) / np.linalg.norm(w)))
  return max(shares)


def kernel_isotropy(model) -> dict[str, float]:
  """``{layer path: c4_invariant_share}`` of every weight-sharing layer's canonical kernels."""
  return {path: c4_invariant_share(np.asarray(layer.canonical_weight()), layer.kernel_size)
          for path, layer in weight_sharing_layers(model)}


def _isotropy_rows(root: str, step: int = 234) -> list[str]:
  # pylint: disable=import-outside-toplevel
  from ds_symmetry.train import load_model
  from ds_symmetry.train.restore import NUM_CLASSES, build_model
  lines = []
  for row in ("power_blend", "gcnn"):
    workdir = seed0(root, row)
    try:
      model, config, _ = load_model(workdir, step)
    except (FileNotFoundError, ValueError):
      lines.append(f"{row} step {step}: no checkpoint")
      continue
    for label, current in ((f"{row} initial", build_model(config, NUM_CLASSES)),
                           (f"{row} step {step}", model)):
      shares = kernel_isotropy(current)
      lines.append(f"{label}: C4-invariant share of the kernels by layer "
                   + " ".join(f"{share:.2f}" for share in shares.values()))
  return lines


def rounded_run_against_gcnn(root: str) -> dict[str, float] | None:
  """Largest differences between the rounded ``power_blend_discover`` run's retrained model
  and the ``gcnn`` row's, both at their initial weights (seed 0); None without the runs."""
  # pylint: disable=import-outside-toplevel
  import ml_collections
  from ds_symmetry.train.restore import NUM_CLASSES, build_model
  rounded_dir, gcnn_dir = seed0(root, "power_blend_discover"), seed0(root, "gcnn")
  discovered = run_files.load_discovered(rounded_dir)
  configs = [run_files.read_config(d, strict=False) for d in (rounded_dir, gcnn_dir)]
  if discovered is None or None in configs:
    return None
  rounded, gcnn = (build_model(ml_collections.ConfigDict(c), NUM_CLASSES, found)
                   for c, found in zip(configs, (discovered, None)))

  def largest(a, b):  # tree.map: a difference in structure is an error, not a shorter zip
    return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.abs(x - y).max()), a, b)))

  x = jax.random.normal(jax.random.key(0), (8, 28, 28, 1))
  y = jnp.arange(8) % 10

  def grads(model):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params):
      logits = nnx.merge(graphdef, params, rest)(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return jax.grad(loss)(params)

  stacks = [[layer.representation_stack() for _, layer in weight_sharing_layers(m)]
            for m in (rounded, gcnn)]
  return {"weights": largest(nnx.state(rounded, nnx.Param), nnx.state(gcnn, nnx.Param)),
          "stacks": largest(*stacks), "outputs": largest(rounded(x), gcnn(x)),
          "gradients": largest(grads(rounded), grads(gcnn))}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--root", default="results")
  args = parser.parse_args(argv)
  difference, scale = same_network()
  print(f"same network: largest output difference {difference:.3g} (outputs up to {scale:.3g})")
  print(f"hand-written vs JAX gradients: largest relative difference {gradient_difference():.2g}")
  for row in ("gcnn", "power_blend"):
    workdir = seed0(args.root, row)
    for step in (234, 468):
      rms = lifting_adam_rms(workdir, step)
      print(f"{row} step {step}: lifting weights' Adam RMS "
            f"{'no checkpoint' if rms is None else f'{rms:.2g}'}")
  for line in _isotropy_rows(args.root):
    print(line)
  differences = rounded_run_against_gcnn(args.root)
  print("rounded power_blend_discover run vs gcnn at their initial weights: " + (
      "no runs" if differences is None else
      ", ".join(f"largest {name} difference {value:.3g}" for name, value in differences.items())))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
