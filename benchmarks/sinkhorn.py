"""Sinkhorn forward+backward: ours (default and memory_efficient) vs OTT-JAX, time and memory.

For each stack ``[3, n, n]`` it times ``jax.grad`` of ``sum(S * W)`` wrt the logits (jitted, median
of repeated calls) and reads XLA's memory analysis of the same compiled gradient. OTT-JAX runs
the same fixed number of iterations (``min_iterations == max_iterations``, ``inner_iterations=1``,
``implicit_diff=None``: unrolled, ``lax.scan``), vmapped over the stack, with ``Geometry(
cost_matrix=-L, epsilon=1.0)`` and uniform marginals (``n * out.matrix`` is doubly stochastic).
OTT updates columns first; the work per iteration is the same.

Columns: ``*_ms`` median milliseconds; ``*_temp_MB`` XLA temp (scratch incl. saved residuals);
ratios are ours/OTT (< 1: ours is faster / smaller); ``peak`` = temp + arguments + outputs.

Run: ``python -m benchmarks.run sinkhorn`` (``--quick`` for small sizes).
"""

from __future__ import annotations

import functools

import ds_symmetry  # noqa: F401  (fast CPU convolution flag, before jax starts)
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import compiled_memory_bytes, format_table, median_time
from ds_symmetry.ops.sinkhorn import sinkhorn

TITLE = "Sinkhorn forward+backward (grad of sum(S*W)), ours vs OTT-JAX, stack of 3"
COLUMNS = ["shape", "iters", "ours_ms", "mem_eff_ms", "ott_ms", "ours/ott_time",
           "mem_eff/ott_time", "ours_temp_MB", "mem_eff_temp_MB", "ott_temp_MB",
           "ours/ott_temp", "mem_eff/ott_temp", "ours/ott_peak", "mem_eff/ott_peak"]

STACK = 3
SIZES = (25, 100, 196)
ITERS = 20
SCALING_SIZE = 196
SCALING_ITERS = (20, 100, 200)


def _ott_doubly_stochastic(log_alpha: jax.Array, num_iters: int) -> jax.Array:
  """OTT-JAX's Sinkhorn on one ``[n, n]`` matrix at a fixed iteration count, unrolled."""
  from ott.geometry import geometry
  from ott.problems.linear import linear_problem
  from ott.solvers.linear import sinkhorn as ott_sinkhorn
  n = log_alpha.shape[-1]
  geom = geometry.Geometry(cost_matrix=-log_alpha, epsilon=1.0)
  solver = ott_sinkhorn.Sinkhorn(lse_mode=True, min_iterations=num_iters,
                                 max_iterations=num_iters, inner_iterations=1,
                                 implicit_diff=None)
  return n * solver(linear_problem.LinearProblem(geom)).matrix


def _grad_fns(num_iters: int, weights: jax.Array) -> dict:
  def loss(operator, logits):
    return jnp.sum(operator(logits) * weights)

  operators = {
      "ours": functools.partial(sinkhorn, num_iters=num_iters),
      "mem_eff": functools.partial(sinkhorn, num_iters=num_iters, memory_efficient=True),
      "ott": jax.vmap(functools.partial(_ott_doubly_stochastic, num_iters=num_iters)),
  }
  return {name: jax.jit(jax.grad(functools.partial(loss, op))) for name, op in operators.items()}


def _row(n: int, num_iters: int, *, timed: bool, repeats: int) -> dict:
  rng = np.random.default_rng(n)
  logits = jnp.asarray(rng.uniform(size=(STACK, n, n)), jnp.float32)  # the paper's init
  weights = jnp.asarray(rng.standard_normal((STACK, n, n)), jnp.float32)
  fns = _grad_fns(num_iters, weights)
  row = {"shape": f"[{STACK},{n},{n}]", "iters": num_iters}
  memory = {name: compiled_memory_bytes(fn, logits) for name, fn in fns.items()}
  for name in fns:
    row[f"{name}_temp_MB"] = memory[name]["temp"] / 2**20
  for name in ("ours", "mem_eff"):
    row[f"{name}/ott_temp"] = memory[name]["temp"] / memory["ott"]["temp"]
    row[f"{name}/ott_peak"] = memory[name]["peak"] / memory["ott"]["peak"]
  if timed:
    times = {name: median_time(lambda fn=fn: fn(logits), repeats=repeats, warmup=2)
             for name, fn in fns.items()}
    for name, seconds in times.items():
      row[f"{name}_ms"] = 1e3 * seconds
    row["ours/ott_time"] = times["ours"] / times["ott"]
    row["mem_eff/ott_time"] = times["mem_eff"] / times["ott"]
  return row


def run(quick: bool = False) -> list[dict]:
  """Rows: each stack size at 20 iterations, then [3,196,196] at 100 and 200 iterations."""
  repeats = 3 if quick else 15
  sizes = SIZES[:2] if quick else SIZES
  rows = [_row(n, ITERS, timed=True, repeats=repeats) for n in sizes]
  scaling_size = sizes[-1]
  for num_iters in SCALING_ITERS[1:]:
    rows.append(_row(scaling_size, num_iters, timed=not quick, repeats=max(3, repeats // 3)))
  return rows


def main() -> None:
  from benchmarks.common import device_description
  print(f"device: {device_description()}\n== {TITLE} ==")
  print(format_table(run(quick=False), COLUMNS))


if __name__ == "__main__":
  main()
