"""Train-step cost of the paper's models, side by side in one process.

Rows: ``wscnn`` vs ``gcnn`` vs ``cnn`` at batch 64 on MNIST shapes, and ``wsresnet`` vs
``gresnet`` vs ``resnet`` at batch 128 on CIFAR shapes. One AdamW step (forward, backward,
update) per call, jitted; the kernel stacks are built once per step (inside the model, from the
parameters), never per example. Memory is XLA's compiled-memory analysis of the step.

  python -m benchmarks.run models            # full size
  python -m benchmarks.run models --quick    # small batches, MNIST models only

Target (issue 3): a wscnn step costs at most 1.1× a gcnn step of the same width on this CPU
(the reference implementation: 1.02×).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from benchmarks import common
from ds_symmetry.models import create_model, regularizer_terms

TITLE = "Train step (forward + backward + AdamW) per model"
COLUMNS = ["model", "batch", "ms_per_step", "ratio_vs_gcnn", "images_per_s", "peak_MiB",
           "compile_s"]

MNIST = [("cnn", {}), ("gcnn", {}), ("wscnn", {})]
CIFAR = [("resnet", {}), ("gresnet", {}), ("wsresnet", {})]


def make_step(model: nnx.Module):
  """Returns ``(step, state)``: a pure jitted ``step(state, x, y) -> (state, loss)``."""
  optimizer = nnx.Optimizer(model, optax.adamw(1e-3, weight_decay=1e-4), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))

  def step(state, x, y):
    model, optimizer = nnx.merge(graphdef, state)

    def loss_fn(model):
      logits = model(x)
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return ce + 0.1 * regularizer_terms(model)["norm"]
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return nnx.state((model, optimizer)), loss
  return jax.jit(step, donate_argnums=0), state


def measure(name: str, options: dict, batch: int, shape, repeats: int) -> dict:
  model = create_model(name, num_classes=10, rngs=nnx.Rngs(0), **options)
  model.train()
  step, state = make_step(model)
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, *shape))
  y = jnp.arange(batch) % 10
  start = time.perf_counter()
  memory = common.compiled_memory_bytes(step, state, x, y)  # lowers and compiles once
  compile_s = time.perf_counter() - start
  holder = {"state": state}

  def one():
    holder["state"], loss = step(holder["state"], x, y)
    return loss
  seconds = common.median_time(one, repeats=repeats, warmup=1)
  return {"model": name, "batch": batch, "ms_per_step": 1e3 * seconds,
          "images_per_s": batch / seconds, "peak_MiB": memory["peak"] / 2**20,
          "compile_s": compile_s}


def _with_ratios(rows, baseline):
  base = next(r["ms_per_step"] for r in rows if r["model"] == baseline)
  for row in rows:
    row["ratio_vs_gcnn"] = row["ms_per_step"] / base
  return rows


def run(quick: bool = False) -> list[dict]:
  repeats = 3 if quick else 7
  mnist_batch, cifar_batch = (16, 16) if quick else (64, 128)
  rows = _with_ratios([measure(n, o, mnist_batch, (28, 28, 1), repeats) for n, o in MNIST],
                      "gcnn")
  if not quick:
    rows += _with_ratios([measure(n, o, cifar_batch, (32, 32, 3), repeats) for n, o in CIFAR],
                         "gresnet")
  return rows


def main():
  print(common.format_table(run(), COLUMNS))


if __name__ == "__main__":
  main()
