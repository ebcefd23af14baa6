"""Training throughput of the paper's models: one jitted train step (augmentation included).

  python -m benchmarks.run training [--quick]

Each row builds the trainer's own step (``ds_symmetry.train.steps``): gather a batch from the
device-resident uint8 train array, the protocol's augmentation (rotation for MNIST, flips for
CIFAR), forward, backward, AdamW update, with the paper's regulariser. Median over steps after
compilation. ``reference_ms`` is the authors' PyTorch code (2 threads, batch 64, no data
loading): with ``DS_SYMMETRY_REFERENCE_REPO`` pointing at a checkout of it (and PyTorch
installed) it is timed in this process, its steps alternating with ours (``reference``:
measured); otherwise the step times recorded on an idle machine of this kind are quoted
(``reference``: recorded; docs/data.md §2, ``benchmarks/reference.py``). ``speedup`` =
reference_ms / step_ms (> 1: faster than the reference, although ours also augments).
``before_ms``: the same step traced with JAX's own gradients instead of the hand-written
backward passes of ``ds_symmetry.ops.gradients`` (what the step cost before issue #11), timed
alternating with ours; ``before_speedup`` = reference_ms / before_ms. Quick mode: fewer repeats
and 8-channel CIFAR models.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

import ds_symmetry  # noqa: F401
from benchmarks import reference
from benchmarks.common import alternating_medians, block, compiled_memory_bytes
from ds_symmetry.ops.gradients import custom_gradients
from ds_symmetry.data import make_protocol
from ds_symmetry.models import create_model
from ds_symmetry.nn import parameter_groups
from ds_symmetry.train import base_config, make_mesh
from ds_symmetry.train import steps as steps_lib

TITLE = "Training step throughput (augmentation included), this CPU"
COLUMNS = ["model", "channels", "batch", "augment", "compile_s", "step_ms", "images_per_s",
           "peak_MiB", "before_ms", "before/after", "reference_ms", "reference", "speedup",
           "before_speedup", "augment_overhead"]


def synthetic_protocol(cifar: bool):
  """Rotated MNIST or flipped CIFAR-10 shapes on random uint8 data (2,048 train images)."""
  rng = np.random.default_rng(0)
  shape = (32, 32, 3) if cifar else (28, 28, 1)
  arrays = (rng.integers(0, 256, (2048,) + shape, dtype=np.uint8),
            rng.integers(0, 10, (2048,), dtype=np.int32),
            rng.integers(0, 256, (16,) + shape, dtype=np.uint8),
            rng.integers(0, 10, (16,), dtype=np.int32))
  return make_protocol("flipped_cifar10" if cifar else "rotated_mnist", arrays=arrays)


class StepSetup:
  """The trainer's jitted step for one model on synthetic data, ready to call.

  ``step(state, images, labels, batches[i])``; :meth:`one` runs the next step in place."""

  def __init__(self, name, protocol, batch, options, *, augment=True):
    mesh = make_mesh()
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    config = base_config()
    self.name, self.batch, self.options = name, batch, dict(options)
    self.model = create_model(name, num_classes=10, rngs=nnx.Rngs(0), **options)
    self.num_params = sum(int(np.size(leaf)) for leaf in
                          jax.tree.leaves(nnx.state(self.model, nnx.Param)))
    tx = steps_lib.make_optimizer(config, parameter_groups(self.model), 1000)
    transform = (protocol.augment if augment
                 else lambda key, images: protocol.preprocess(images))
    steps = steps_lib.Steps(steps_lib.TrainState(self.model, tx), transform, seed=0,
                            weights=steps_lib.regularizer_weights(config), mesh=mesh)
    self.state, self.step = steps.initial_state, steps.train
    self.images = jax.device_put(protocol.train_images, replicated)
    self.labels = jax.device_put(protocol.train_labels, replicated)
    count = protocol.train_images.shape[0] // batch
    self.batches = [jax.device_put(np.arange(i * batch, (i + 1) * batch, dtype=np.int32),
                                   sharded) for i in range(count)]
    self.i = 0

  def args(self):
    return self.state, self.images, self.labels, self.batches[0]

  def one(self):
    self.state, metrics = self.step(self.state, self.images, self.labels,
                                    self.batches[self.i % len(self.batches)])
    self.i += 1
    return self.state, metrics


def measure_step(name, protocol, batch, options, repeats, *, augment=True,
                 against=None) -> dict:
  """Compile time, median step time and XLA's compiled peak memory of the trainer's step.

  ``augment=False`` swaps the protocol's augmentation for its plain normalisation, so the
  difference between the two is what augmentation costs inside the step. ``against``:
  ``{name: step}`` of other steps (callables, e.g. the reference's) timed with calls
  alternating with ours; their medians are ``<name>_ms``."""
  setup = StepSetup(name, protocol, batch, options, augment=augment)
  start = time.perf_counter()
  memory = compiled_memory_bytes(setup.step, *setup.args())
  compile_s = time.perf_counter() - start
  row = {"model": name, "channels": model_channels(name, options), "batch": batch,
         "augment": augment, "compile_s": compile_s, "peak_MiB": memory["peak"] / 2**20}
  others = dict(against or {})
  medians = alternating_medians([setup.one] + list(others.values()), repeats=repeats,
                                warmup=1 if not others else 2)
  seconds = medians[0]
  for key, other in zip(others, medians[1:]):
    row[f"{key}_ms"] = 1e3 * other
  row.update(step_ms=1e3 * seconds, images_per_s=batch / seconds)
  return row


def autodiff_step(name, protocol, batch, options, *, augment=True):
  """The same step traced with JAX's own gradients (``ops.gradients.custom_gradients(False)``):
  what a step cost before the hand-written backward passes."""
  setup = StepSetup(name, protocol, batch, options, augment=augment)
  with custom_gradients(False):
    block(setup.one())  # traced and compiled now, inside the context
  return setup.one


def _row(name, protocol, batch, options, repeats):
  against = {"before": autodiff_step(name, protocol, batch, options)}
  source = "recorded"
  if name in reference.RECORDED_MS and reference.available() and batch == 64:
    against["reference"] = reference.make_step(name, batch)
    source = "measured"
  row = measure_step(name, protocol, batch, options, repeats, against=against)
  ref_ms = row.pop("reference_ms", None) or reference.RECORDED_MS.get(name)
  row.update(reference_ms=ref_ms or "", reference=source if ref_ms else "",
             speedup=ref_ms / row["step_ms"] if ref_ms else "",
             before_speedup=ref_ms / row["before_ms"] if ref_ms else "",
             **{"before/after": row["before_ms"] / row["step_ms"]})
  return row


def model_channels(name, options):
  from ds_symmetry.models.factory import MODEL_DEFAULTS  # pylint: disable=import-outside-toplevel
  return options.get("channels", MODEL_DEFAULTS[name]["channels"])


MNIST_MODELS = ("cnn", "gcnn", "wscnn")
CIFAR_MODELS = ("resnet", "gresnet", "wsresnet")


def run(quick: bool, models=None) -> list[dict]:
  """Rows for ``models`` (default: all six; the ``wscnn`` row brings its no-augmentation twin)."""
  models = tuple(models or MNIST_MODELS + CIFAR_MODELS)
  unknown = sorted(set(models) - set(MNIST_MODELS + CIFAR_MODELS))
  if unknown:
    raise ValueError(f"models={unknown}: expected some of {MNIST_MODELS + CIFAR_MODELS}")
  repeats = 3 if quick else 10
  rows = []
  mnist = synthetic_protocol(cifar=False)
  for name in (m for m in MNIST_MODELS if m in models):
    rows.append(_row(name, mnist, 64, {}, repeats))
    if name == "wscnn":
      # What rotation augmentation costs inside a wscnn step (issue target: at most 10%).
      plain = measure_step("wscnn", mnist, 64, {}, repeats, augment=False)
      plain["augment_overhead"] = rows[-1]["step_ms"] / plain["step_ms"] - 1.0
      rows.append(plain)
  cifar = synthetic_protocol(cifar=True)
  for name in (m for m in CIFAR_MODELS if m in models):
    # CIFAR steps take seconds on a CPU: fewer repeats.
    rows.append(_row(name, cifar, 128, {"channels": 8} if quick else {}, max(3, repeats // 3)))
  return rows


def main(argv=None):
  """``python -m benchmarks.training [models ...]``: the table for some models only."""
  import sys  # pylint: disable=import-outside-toplevel
  from benchmarks.common import format_table  # pylint: disable=import-outside-toplevel
  print(format_table(run(quick=False, models=(sys.argv[1:] if argv is None else argv)), COLUMNS))


if __name__ == "__main__":
  main()
