"""The paper's App. C.4 comparison (its Figs. 13–14 give no numbers): inference time and memory
of one group-convolution layer, regular G-conv vs weight-sharing, as |G| and k grow.

Input ``[32, 100, 100, C_in, |G|]`` (the paper's 32×3×100×100 with a group axis; C_in = C_out
= 3), |G| in {4, 8, 16}, kernel in {3, 5, 7}, 'SAME' padding. Three ways to build the kernel
stack, each followed by the same single convolution:

* ``gconv_gather`` — a classic regular G-conv: every element's permutation applied by
  indexing (``K_g = θ[..., π_g]``), O(|G|·C_out·C_in·|G|k²) work;
* ``exact_dense`` — our G-CNN path: the same permutations as dense 0/1 matrices through the
  weight-sharing einsum, O(|G|·C_out·C_in·(|G|k²)²);
* ``weight_sharing`` — learned logits → Sinkhorn (20 iterations) → einsum (the WS layer).
* ``kronecker`` — the factorised layer (``factorise="kronecker"``): logits ``A [G, G, G]`` and
  ``B [G, k², k²]`` → Sinkhorn → ``ops.structure.kronecker_group_kernels`` (never the
  ``[G, G·k², G·k²]`` stack);
* ``tied_cayley`` — ``B`` only (in a network: the lifting layer's), ``A`` derived from B's
  soft Cayley table (``factorise="kronecker", tie="cayley"``).

For |G| = 8, 16 there is no exact rotation group on a pixel grid; random permutations stand in
(the cost does not depend on which permutation is applied). Memory is XLA's compiled-memory
analysis of the forward pass (arguments + outputs + scratch).

  python -m benchmarks.run layer_scaling          # full grid, writes layer_scaling.png
  python -m benchmarks.run layer_scaling --quick  # batch 4
"""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from ds_symmetry import ops
from ds_symmetry.ops import structure
from ds_symmetry.ops.sinkhorn import sinkhorn

TITLE = "App. C.4: one group-conv layer, inference (G-conv vs weight sharing)"
COLUMNS = ["G", "k", "variant", "ms", "ratio_vs_gather", "peak_MiB", "stack_MiB"]
PLOT_PATH = pathlib.Path(__file__).with_name("layer_scaling.png")
CHANNELS = 3


def _random_permutation_indices(group: int, d: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return np.stack([np.arange(d)] + [rng.permutation(d) for _ in range(group - 1)])


def _variants(group: int, k: int):
  """``{name: (fn(x, weight, logits), logits)}``: logits are inputs, not constants, so XLA
  cannot fold the Sinkhorn iterations away."""
  d = group * k * k
  indices = jnp.asarray(_random_permutation_indices(group, d))
  dense = jax.nn.one_hot(indices, d, dtype=jnp.float32)  # [G, d, d], dense[g, n, π_g(n)] = 1
  keys = jax.random.split(jax.random.PRNGKey(2), 3)
  full_logits = jax.random.uniform(keys[0], (group, d, d))
  factor_logits = (jax.random.uniform(keys[1], (group, group, group)),
                   jax.random.uniform(keys[2], (group, k * k, k * k)))

  def gather(x, weight, logits):
    del logits
    stack = weight[:, :, indices]                          # [C_out, C_in, G(out), d]
    stack = stack.reshape(CHANNELS, CHANNELS, group, group, k, k)  # o, i, g, h, y, x
    kernel = jnp.transpose(stack, (4, 5, 1, 3, 0, 2)).reshape(
        k, k, CHANNELS * group, CHANNELS * group)
    return ops.conv2d(x.reshape(*x.shape[:3], -1), kernel, "SAME")

  def exact(x, weight, logits):
    del logits
    return ops.group_conv(x, dense, weight, padding="SAME")

  def learned(x, weight, logits):
    return ops.group_conv(x, sinkhorn(logits, 20), weight, padding="SAME")

  def kronecker(x, weight, logits):
    group_logits, spatial_logits = logits
    kernel = structure.kronecker_group_kernels(sinkhorn(group_logits, 20),
                                               sinkhorn(spatial_logits, 20), weight)
    return ops.conv2d(x.reshape(*x.shape[:3], -1), kernel, "SAME")

  def tied_cayley(x, weight, logits):
    spatial = sinkhorn(logits[1], 20)
    kernel = structure.kronecker_group_kernels(structure.soft_cayley_factors(spatial), spatial,
                                               weight)
    return ops.conv2d(x.reshape(*x.shape[:3], -1), kernel, "SAME")
  return {"gconv_gather": (gather, full_logits), "exact_dense": (exact, full_logits),
          "weight_sharing": (learned, full_logits), "kronecker": (kronecker, factor_logits),
          "tied_cayley": (tied_cayley, factor_logits)}


def run(quick: bool = False, cells=None) -> list[dict]:
  """Every (|G|, k) cell, or only ``cells`` (e.g. ``[(16, 7)]``; no plot then)."""
  batch = 4 if quick else 32
  repeats = 3 if quick else 5
  rows = []
  for group, k in cells or [(g, k) for g in (4, 8, 16) for k in (3, 5, 7)]:
    d = group * k * k
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, 100, 100, CHANNELS, group))
    weight = jax.random.normal(jax.random.PRNGKey(1), (CHANNELS, CHANNELS, d))
    block = []
    for variant, (fn, logits) in _variants(group, k).items():
      jitted = jax.jit(fn)
      memory = common.compiled_memory_bytes(jitted, x, weight, logits)
      seconds = common.median_time(lambda: jitted(x, weight, logits), repeats=repeats)
      block.append({"G": group, "k": k, "variant": variant, "ms": 1e3 * seconds,
                    "peak_MiB": memory["peak"] / 2**20,
                    "stack_MiB": (group * d * d * 4 / 2**20) if variant in (
                        "exact_dense", "weight_sharing") else 0.0})
    base = block[0]["ms"]
    for row in block:
      row["ratio_vs_gather"] = row["ms"] / base
    rows += block
  if not quick and cells is None:
    try:
      plot(rows, PLOT_PATH)
    except Exception as error:  # pylint: disable=broad-except
      print(f"layer_scaling: the plot failed ({error!r}); the table follows", file=sys.stderr)
  return rows


def plot(rows, path):
  """Time and memory vs kernel size, one line per (variant, |G|)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for variant, style in (("gconv_gather", ":"), ("exact_dense", "--"), ("weight_sharing", "-"),
                         ("kronecker", "-."), ("tied_cayley", (0, (1, 1)))):
    for group, color in ((4, "tab:blue"), (8, "tab:orange"), (16, "tab:green")):
      sel = [r for r in rows if r["variant"] == variant and r["G"] == group]
      ks = [r["k"] for r in sel]
      if not sel:
        continue
      axes[0].plot(ks, [r["ms"] for r in sel], linestyle=style, color=color, marker="o",
                   label=f"{variant} |G|={group}")
      axes[1].plot(ks, [r["peak_MiB"] for r in sel], linestyle=style, color=color, marker="o")
  axes[0].set(xlabel="kernel size", ylabel="ms per forward (median)", yscale="log",
              title="inference time")
  axes[1].set(xlabel="kernel size", ylabel="MiB (XLA compiled peak)", yscale="log",
              title="inference memory")
  axes[0].legend(fontsize=6, ncol=1)
  fig.suptitle(f"one group-conv layer, input 32×100×100×3×|G| ({common.device_description()})")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main():
  """``python -m benchmarks.layer_scaling [G,k ...]``: the whole grid, or the given cells."""
  cells = [tuple(int(v) for v in arg.split(",")) for arg in sys.argv[1:]] or None
  print(common.format_table(run(cells=cells), COLUMNS))


if __name__ == "__main__":
  main()
