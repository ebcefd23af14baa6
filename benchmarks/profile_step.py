"""Where one training step's time goes: XLA's own profile of the trainer's jitted step.

  python -m benchmarks.run profile [--quick]
  python -m benchmarks.profile_step [cnn gcnn wscnn] [--quick] [--no-1core]

For ``cnn``, ``gcnn`` and ``wscnn`` (rotated-MNIST shapes, batch 64, the models' default
widths as in ``benchmarks.training``: 64 channels for the CNN, 32 × |G| = 4 for the others),
the trainer's step (augmentation, forward, backward, AdamW) runs under ``jax.profiler``; every
HLO instruction's thunk time is summed and put into a part (``benchmarks.xla_profile``):
convolution forward / input gradient / weight gradient per layer, bias + norm + ReLU,
kernel-stack build, Sinkhorn + regularisers, relayouts (copies / transposes XLA inserts,
e.g. around the weight-gradient convolutions), optimizer, head + loss, augmentation.
A piece that ``auto`` computes by matrix products (``ops.conv_paths``: winograd on an AVX-512
CPU for the 5×5 layers with at least 64 input channels) is one part, ``conv (im2col / rows /
winograd paths)``; to see every piece per layer, run with ``DS_SYMMETRY_CONV_PATH=xla``.

Each model is measured in two fresh processes: on both cores and pinned to one
(``taskset -c 0``). ``1core/2core`` per part says how well that part uses the second core
(2.0: perfectly parallel; 1.0: one core does all the work). While several thunks run at once
each is charged an equal share of the elapsed time (``xla_profile.exclusive_times``), so the
parts add up to the time during which anything ran (``sum of parts``); the rest of the
wall-clock ``step`` is dispatch and idle time. ``share`` is a part's share of the sum. When XLA
runs two parts at once (e.g. a layer's input- and weight-gradient convolutions) the split
between them is approximate; their sum is not. Parts under 0.1% are merged. Quick mode:
batch 16, fewer steps; on an accelerator the 1-core run is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

TITLE = "Profile of one training step (XLA's per-op times), 2 cores vs pinned to 1"
COLUMNS = ["model", "part", "ms", "share", "ms_1core", "1core/2core"]
MODELS = ("cnn", "gcnn", "wscnn")


def _layers(name):
  from benchmarks.xla_profile import ConvLayer  # pylint: disable=import-outside-toplevel
  del name  # the three MNIST models: 5 blocks, kernel 5, 'VALID', 28 px input
  return [ConvLayer(28 - 4 * i, 5) for i in range(5)]


def worker(name: str, batch: int, steps: int) -> dict:
  """Runs in a fresh process: median step wall time and per-part XLA op times."""
  import ds_symmetry  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  from benchmarks import common, training, xla_profile  # pylint: disable=import-outside-toplevel
  setup = training.StepSetup(name, training.synthetic_protocol(False), batch, {})
  text = setup.step.lower(*setup.args()).compile().as_text()
  step_ms = 1e3 * common.median_time(setup.one, repeats=steps, warmup=2)
  calls = max(2, steps // 2)
  index = xla_profile.HloIndex(text)
  intervals = xla_profile.op_intervals(setup.one, calls, module="jit_train")
  times = xla_profile.exclusive_times(intervals, calls, skip=index.is_control_flow)
  parts = xla_profile.breakdown(index, times, _layers(name))
  return {"step_ms": step_ms, "parts": parts}


def _spawn(name, batch, steps, one_core: bool) -> dict:
  command = [sys.executable, "-m", "benchmarks.profile_step", "--worker", name, str(batch),
             str(steps)]
  if one_core:
    if not shutil.which("taskset"):
      return {}
    command = ["taskset", "-c", "0"] + command
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=root, env=env)
  return json.loads(out.stdout.strip().splitlines()[-1])


def _sort_key(part: str):
  if part.startswith("conv L"):
    layer, kind = part[6:].split(" ", 1)
    return (0, int(layer), ("forward", "input-grad", "weight-grad").index(kind)
            if kind in ("forward", "input-grad", "weight-grad") else 3)
  return (1, part)


def rows_for(name: str, two: dict, one: dict, min_share: float = 1e-3) -> list[dict]:
  """Table rows of one model: each part (parts under ``min_share`` of the total merged into
  "other (small parts)"), all convolutions, the sum of the parts and the wall-clock step."""
  parts = dict(two["parts"])
  parts_one = dict(one.get("parts", {})) if one else {}
  total = sum(parts.values())
  small = [p for p, ms in parts.items() if ms < min_share * total and not p.startswith("conv")]
  if small:
    parts["other (small parts)"] = sum(parts.pop(p) for p in small)
    if one:
      parts_one["other (small parts)"] = sum(parts_one.pop(p, 0.0) for p in small)

  def row(part, ms, ms_one):
    return {"model": name, "part": part, "ms": ms, "share": ms / total,
            "ms_1core": ms_one if ms_one is not None else "",
            "1core/2core": ms_one / ms if ms_one and ms else ""}

  rows = [row(p, parts[p], parts_one.get(p) if one else None)
          for p in sorted(parts, key=_sort_key)]
  convs = sum(v for k, v in parts.items() if k.startswith("conv"))
  convs_one = sum(v for k, v in parts_one.items() if k.startswith("conv")) if one else None
  rows.append(row("all convolutions", convs, convs_one))
  rows.append(row("sum of parts", total, sum(parts_one.values()) if one else None))
  rows.append(row("step (wall clock)", two["step_ms"], one.get("step_ms") if one else None))
  return rows


def run(quick: bool = False, models=MODELS, one_core: bool = True) -> list[dict]:
  import jax  # pylint: disable=import-outside-toplevel
  batch, steps = (16, 4) if quick else (64, 8)
  # Pinning to one core says something only about a CPU backend.
  one_core = one_core and jax.default_backend() == "cpu"
  rows = []
  for name in models:
    two = _spawn(name, batch, steps, one_core=False)
    one = _spawn(name, batch, steps, one_core=True) if one_core else {}
    rows += rows_for(name, two, one)
  return rows


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  if argv and argv[0] == "--worker":
    print(json.dumps(worker(argv[1], int(argv[2]), int(argv[3]))))
    return
  from benchmarks.common import format_table  # pylint: disable=import-outside-toplevel
  flags = {"--quick", "--no-1core"}
  models = tuple(a for a in argv if a not in flags) or MODELS
  print(format_table(run(quick="--quick" in argv, models=models,
                         one_core="--no-1core" not in argv), COLUMNS))


if __name__ == "__main__":
  main()
