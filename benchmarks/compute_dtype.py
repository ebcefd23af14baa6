"""bfloat16 convolutions against float32: the trainer's step for each MNIST model, side by side.

  python -m benchmarks.run compute_dtype [--quick]

For ``cnn``, ``gcnn`` and ``wscnn`` (batch 64, rotated-MNIST shapes, synthetic data) the
trainer's jitted step (``benchmarks.training.StepSetup``) with ``compute_dtype=None`` (float32)
and with ``compute_dtype="bfloat16"`` (the convolutions' operands cast to bfloat16; their
results, the parameters, the optimizer and the Sinkhorn stay float32), calls alternating,
medians. ``bf16/f32`` < 1: bfloat16 is faster. Whether the CPU has native bfloat16 dot
products (``avx512_bf16``, AMX) is printed above the table by ``benchmarks.run``'s CPU line.
Quick mode: 4 channels, 3 repeats.
"""

from __future__ import annotations

import ds_symmetry  # noqa: F401  (fast CPU convolution flag, before jax starts)
from benchmarks.common import alternating_medians
from benchmarks.training import StepSetup, model_channels, synthetic_protocol

TITLE = "bfloat16 convolutions vs float32: training step per MNIST model"
COLUMNS = ["model", "channels", "f32_ms", "bf16_ms", "bf16/f32"]
MODELS = ("cnn", "gcnn", "wscnn")


def run(quick: bool) -> list[dict]:
  protocol = synthetic_protocol(cifar=False)
  options = {"channels": 4} if quick else {}
  rows = []
  for name in MODELS:
    f32 = StepSetup(name, protocol, 64, options)
    bf16 = StepSetup(name, protocol, 64, dict(options, compute_dtype="bfloat16"))
    f32_s, bf16_s = alternating_medians([f32.one, bf16.one], repeats=3 if quick else 10,
                                        warmup=2)
    rows.append({"model": name, "channels": model_channels(name, options),
                 "f32_ms": 1e3 * f32_s, "bf16_ms": 1e3 * bf16_s, "bf16/f32": bf16_s / f32_s})
  return rows
