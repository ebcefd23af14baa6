"""XLA:CPU's convolution back ends and layouts, side by side: which one ``import ds_symmetry``
should pick (``ds_symmetry._xla_flags``).

  python -m benchmarks.run xla_cpu_flags [--quick]

XLA reads ``XLA_FLAGS`` once per process, so every candidate runs in a fresh subprocess
(``python -m benchmarks.xla_cpu_flags --child``, ``DS_SYMMETRY_FAST_CPU_CONV=0`` so that only
the candidate's flags are set). Each times ``lax.conv_general_dilated`` alone (jitted; its
gradients by ``jax.vjp``, JAX's own, not the hand-written input gradient) on the MNIST models'
convolution shapes, batch 64, kernel 5, 'VALID': the forward and the forward with both
gradients, medians of repeated calls, summed over the shapes. The candidates run in turn,
twice, and each keeps the median (the mean) of its two rounds, so that load from elsewhere
falls on all alike. ``/ours`` > 1: slower than the flag ``import ds_symmetry`` sets.

Candidates: XLA's default CPU convolution (Eigen); the YNN fusion of dots, which also takes
the convolutions (ours); YNN's and XNNPACK's per-convolution fusions; oneDNN through XLA's
custom-call rewrite and through its fusion pass; ours with 512-bit vectors preferred for
XLA's own loops; ours with the operands in NCHW / OIHW instead of NHWC / HWIO.
Quick mode: 8 channels, 2 repeats, 1 round.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

TITLE = "XLA:CPU convolution back ends and layouts (MNIST shapes, batch 64)"
COLUMNS = ["candidate", "flags", "layout", "forward_ms", "with_grads_ms", "forward/ours",
           "with_grads/ours"]

OURS = "--xla_cpu_experimental_ynn_fusion_type=dot"
# (name, XLA_FLAGS, layout)
CANDIDATES = (
    ("ours: YNN dot fusion", OURS, "NHWC"),
    ("XLA default (Eigen)", "", "NHWC"),
    ("YNN per-convolution fusion",
     "--xla_cpu_experimental_ynn_fusion_type=individual_convolution", "NHWC"),
    ("XNNPACK per-convolution fusion",
     "--xla_cpu_experimental_xnn_fusion_type=individual_convolution", "NHWC"),
    ("oneDNN custom calls",
     "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true", "NHWC"),
    ("oneDNN dot fusion", "--xla_cpu_experimental_onednn_fusion_type=dot", "NHWC"),
    ("ours, 512-bit vectors preferred", OURS + " --xla_cpu_prefer_vector_width=512", "NHWC"),
    ("ours, NCHW / OIHW operands", OURS, "NCHW"),
)
# (batch, size, C_in, C_out): the first layers and a deeper one of the cnn (64 ch) and the
# gcnn / wscnn (32 ch x 4 elements = 128).
SHAPES = ((64, 28, 1, 128), (64, 24, 64, 64), (64, 24, 128, 128), (64, 16, 128, 128))
KERNEL = 5


def _child(quick: bool, layout: str) -> dict:
  """Runs in the candidate's process: ``{"forward_ms", "with_grads_ms"}`` summed over
  :data:`SHAPES`."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from benchmarks.common import median_time  # pylint: disable=import-outside-toplevel
  numbers = ("NCHW", "OIHW", "NCHW") if layout == "NCHW" else ("NHWC", "HWIO", "NHWC")
  totals = {"forward_ms": 0.0, "with_grads_ms": 0.0}
  rng = np.random.default_rng(0)
  for batch, size, c_in, c_out in SHAPES:
    if quick:
      c_in, c_out = min(c_in, 8), min(c_out, 8)
    dims = {"N": batch, "H": size, "W": size, "C": c_in}
    kernel_dims = {"O": c_out, "I": c_in, "H": KERNEL, "W": KERNEL}
    x = jax.numpy.asarray(rng.normal(size=[dims[a] for a in numbers[0]]), np.float32)
    w = jax.numpy.asarray(0.05 * rng.normal(size=[kernel_dims[a] for a in numbers[1]]),
                          np.float32)

    def conv(x, w):
      return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=numbers)

    def with_grads(x, w):
      y, pullback = jax.vjp(conv, x, w)
      return pullback(y)

    forward, both = jax.jit(conv), jax.jit(with_grads)
    repeats = 2 if quick else 7
    totals["forward_ms"] += 1e3 * median_time(lambda: forward(x, w), repeats=repeats)
    totals["with_grads_ms"] += 1e3 * median_time(lambda: both(x, w), repeats=repeats)
  return totals


def _measure(flags: str, layout: str, quick: bool) -> dict:
  env = dict(os.environ, XLA_FLAGS=flags, DS_SYMMETRY_FAST_CPU_CONV="0")
  args = [sys.executable, "-m", "benchmarks.xla_cpu_flags", "--child", "--layout", layout]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # -m benchmarks.* from it
  done = subprocess.run(args + (["--quick"] if quick else []), env=env, capture_output=True,
                        text=True, check=False, timeout=1800, cwd=root)
  lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
  if done.returncode or not lines:
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"exit {done.returncode}: {tail[0][:120]}"}
  return json.loads(lines[-1])


def run(quick: bool) -> list[dict]:
  rounds = 1 if quick else 2
  measured = {name: [] for name, _, _ in CANDIDATES}
  for _ in range(rounds):
    for name, flags, layout in CANDIDATES:
      measured[name].append(_measure(flags, layout, quick))
  rows = []
  for name, flags, layout in CANDIDATES:
    good = [m for m in measured[name] if "error" not in m]
    row = {"candidate": name, "flags": flags or "(none)", "layout": layout}
    if not good:
      rows.append(dict(row, forward_ms=measured[name][0]["error"]))
      continue
    for key in ("forward_ms", "with_grads_ms"):
      row[key] = statistics.median(m[key] for m in good)
    rows.append(row)
  ours = rows[0]
  for row in rows:
    if isinstance(row.get("with_grads_ms"), float) and isinstance(ours.get("with_grads_ms"),
                                                                   float):
      row["forward/ours"] = row["forward_ms"] / ours["forward_ms"]
      row["with_grads/ours"] = row["with_grads_ms"] / ours["with_grads_ms"]
  return rows


if __name__ == "__main__":
  if "--child" in sys.argv:
    chosen = sys.argv[sys.argv.index("--layout") + 1] if "--layout" in sys.argv else "NHWC"
    print(json.dumps(_child("--quick" in sys.argv, chosen)))
  else:
    sys.exit("run it through benchmarks.run: python -m benchmarks.run xla_cpu_flags")
