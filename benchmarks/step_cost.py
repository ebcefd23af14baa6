"""Compile time and peak memory of the whole ``wscnn`` training step as it widens.

  python -m benchmarks.run step_cost [--quick]

The trainer's jitted step (rotated-MNIST augmentation, forward, backward, AdamW; batch 64) of
the ``wscnn`` at 32 and 64 channels (× |G| = 4), with the paper's full stacks and the
factorised ones of issue #6 (``factorise="kronecker"`` with ``tie="none"`` or ``"cayley"``:
rows labelled by the pairs' old single names, ``kronecker`` and ``tied_cayley``, in the
``sharing`` column, as in the tables already recorded). ``compile_s``: wall
time of ``jit(...).lower(...).compile()`` (tracing included); ``peak_MiB``: XLA's compiled
memory analysis (arguments + outputs + scratch); ``step_ms``: median over a few steps (calls
alternate between the variants of one width). Quick mode: batch 8, 8 and 16 channels.
"""

from __future__ import annotations

import time

from benchmarks import common, training
from ds_symmetry.nn import stacks

TITLE = "wscnn training step: compile time and peak memory at 32 / 64 channels"
COLUMNS = ["model", "sharing", "channels", "batch", "params", "compile_s", "peak_MiB",
           "step_ms"]
SHARINGS = ("full", "kronecker", "tied_cayley")


def run(quick: bool = False) -> list[dict]:
  batch, widths, repeats = (8, (8, 16), 2) if quick else (64, (32, 64), 3)
  protocol = training.synthetic_protocol(False)
  rows = []
  for channels in widths:
    setups, block = [], []
    for sharing in SHARINGS:
      options = {"channels": channels}
      if sharing != "full":  # the old single name's (factorise, tie)
        options["factorise"], options["tie"] = stacks.STRUCTURES[sharing]
      setup = training.StepSetup("wscnn", protocol, batch, options)
      start = time.perf_counter()
      memory = common.compiled_memory_bytes(setup.step, *setup.args())
      compile_s = time.perf_counter() - start
      params = setup.num_params
      block.append({"model": "wscnn", "sharing": sharing, "channels": channels, "batch": batch,
                    "params": params, "compile_s": compile_s,
                    "peak_MiB": memory["peak"] / 2**20})
      setups.append(setup)
    for row, seconds in zip(block, common.alternating_medians(
        [setup.one for setup in setups], repeats=repeats, warmup=1)):
      row["step_ms"] = 1e3 * seconds
    rows += block
  return rows


def main():
  print(common.format_table(run(), COLUMNS))


if __name__ == "__main__":
  main()
