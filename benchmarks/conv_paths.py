"""The convolution paths side by side: which one to pick on this CPU (issue #26).

  python -m benchmarks.run conv_paths [--quick]
  python -m benchmarks.conv_paths [--quick]

Prints the CPU (``lscpu``'s model name, its AVX-512 and bf16 flags) and the path ``auto`` takes
now, then one table. For the MNIST models' convolution stacks (batch 64, 28 px, five 5×5
'VALID' layers; ``cnn``: 1 → 64 → … → 64 channels, ``gcnn / wscnn``: 1 → 128 → … → 128; and
plain CNNs 32 and 16 channels wide, the identification recipe's selector) each piece of each
layer — forward, input gradient (not for the first layer), weight gradient — is timed under
every path of ``ds_symmetry.ops.conv_paths`` (``xla``, ``im2col``, ``rows``, ``winograd``;
``convolve(..., path=…)`` jitted, gradients from ``jax.vjp``), calls alternating between the
paths and PyTorch/oneDNN (``benchmarks.conv_limit``'s pieces, 2 threads, the faster of NCHW and
channels-last; when torch is importable), medians of the repeats. ``current`` is the path the
piece of that layer takes now (``DS_SYMMETRY_CONV_PATH``; its ``auto`` pieces as
``choose_conv_path`` picks them for the layer's shape); ``<path>/current`` > 1: slower than now;
``<path>/torch`` > 1: slower than oneDNN; ``best``: the fastest path. Per stack, ``all layers``
rows sum each piece over the layers (``<path>``: that path on every layer; ``current``: each
layer's own) and ``all pieces`` sums everything.

Then the trainer's whole step (augmentation, forward, backward, AdamW) of ``cnn``, ``gcnn`` and
``wscnn`` (default widths) and of the identification recipe's selector (``subgroup_cnn``, 16
and 32 channels) traced under each path forced for every piece (``conv_path(…)``) and under
the current one, steps alternating; ``torch_ms`` there is the authors' PyTorch step at the same batch when
``DS_SYMMETRY_REFERENCE_REPO`` points at a checkout of it (``benchmarks.reference``), else
empty. Quick mode: batch 8, 3 repeats.
"""

from __future__ import annotations

import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import conv_limit  # imports ds_symmetry first (fast CPU convolution flag)
from benchmarks.common import alternating_medians, block
from ds_symmetry.ops import conv_paths

TITLE = ("Convolution paths (ops.conv_paths): each piece of each MNIST layer and the training "
         "step, vs the current path and PyTorch/oneDNN")
PATHS = conv_paths.PATHS
COLUMNS = (["stack", "layer", "shape", "piece", "current"] + [f"{p}_ms" for p in PATHS]
           + [f"{p}/current" for p in PATHS] + ["torch_ms", "torch_layout"]
           + [f"{p}/torch" for p in PATHS] + ["best"])
PIECES = ("forward", "input-grad", "weight-grad")
_PIECE_FIELD = {"forward": "forward", "input-grad": "input_grad", "weight-grad": "weight_grad"}
STEP_MODELS = ("cnn", "gcnn", "wscnn", ("selector 16", "subgroup_cnn", {"channels": 16}),
               ("selector 32", "subgroup_cnn", {"channels": 32}))
"""The steps timed: a model name (default widths), or ``(label, name, options)``; the
``subgroup_cnn`` rows are the identification recipe's selector at its two widths."""
STACKS = {**conv_limit.STACKS, "cnn 32": (1, 32), "cnn 16": (1, 16)}
"""``{name: (input channels, width)}``: the MNIST models' stacks and the 32- and 16-channel
plain CNNs (the widths of the identification recipe's selector), where ``auto``'s channel
threshold is decided."""


def cpu_summary() -> str:
  """``CPU: <model name>; AVX-512: …; bf16: …`` from ``lscpu`` (``/proc/cpuinfo`` without it)."""
  model, flags = None, set()
  if shutil.which("lscpu"):
    try:
      text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                            check=False).stdout
    except (OSError, subprocess.SubprocessError):
      text = ""
    for line in text.splitlines():
      key, _, value = line.partition(":")
      if key.strip() == "Model name" and model is None:
        model = value.strip()
      elif key.strip() == "Flags":
        flags = set(value.split())
  if not flags:
    flags = set(conv_paths.cpu_flags())
  if model is None:
    from ds_symmetry import provenance  # pylint: disable=import-outside-toplevel
    model = provenance.cpu_description()["cpu_model"]
  avx512 = sorted(f for f in flags if f.startswith("avx512"))
  bf16 = sorted(f for f in flags if "bf16" in f)
  amx = sorted(f for f in flags if f.startswith("amx"))
  return (f"CPU: {model or '?'}; AVX-512: {' '.join(avx512) or 'none'}; "
          f"bf16: {' '.join(bf16) or 'none'}; AMX: {' '.join(amx) or 'none'}; "
          f"avx2: {'yes' if 'avx2' in flags else 'no'}")


def _piece_functions(batch, size, c_in, c_out, k, path):
  """``{piece: callable}`` for one layer under one path (jitted, operands bound)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, size, size, c_in), np.float32))
  w = jnp.asarray(rng.standard_normal((k, k, c_in, c_out), np.float32) / np.sqrt(k * k * c_in))
  out = size - k + 1
  g = jnp.asarray(rng.standard_normal((batch, out, out, c_out), np.float32))
  conv = lambda x, w: conv_paths.convolve(x, w, "VALID", path=path)
  forward = jax.jit(conv)
  input_grad = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
  weight_grad = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
  return {"forward": lambda: forward(x, w), "input-grad": lambda: input_grad(x, w, g),
          "weight-grad": lambda: weight_grad(x, w, g)}


def _torch_setup(quick_note: str = "conv_paths"):
  torch = conv_limit._torch()  # pylint: disable=protected-access
  if torch is None:
    print(f"{quick_note}: PyTorch is not installed (pip install -e '.[bench]'); torch columns "
          "left empty")
    return None
  if jax.default_backend() != "cpu":
    print(f"{quick_note}: JAX runs on {jax.default_backend()}; the torch columns compare CPU "
          "libraries only and are left empty")
    return None
  torch.set_num_threads(2)
  return torch


def _ratios(row, seconds, current, torch_seconds):
  for path in PATHS:
    row[f"{path}_ms"] = 1e3 * seconds[path]
    row[f"{path}/current"] = seconds[path] / seconds[current]
    row[f"{path}/torch"] = seconds[path] / torch_seconds if torch_seconds else ""
  row["best"] = min(PATHS, key=lambda p: seconds[p])
  return row


def _resolved(requested, batch, size, c_in, c_out, k=5):
  """The path each piece of one layer takes: ``requested``'s, ``auto`` pieces resolved for
  that layer's shape (``choose_conv_path``)."""
  chosen = conv_paths.choose_conv_path(x_shape=(batch, size, size, c_in),
                                       kernel_shape=(k, k, c_in, c_out))
  return conv_paths.ConvPath(*(c if r is None else r for r, c in zip(requested, chosen)))


def _layer_rows(stack, width_in, width, batch, repeats, layers, torch, requested):
  rows = []
  for layer, (size, c_in, c_out) in enumerate(conv_limit.layer_shapes(width_in, width)):
    if layers is not None and layer not in layers:
      continue
    ours = {path: _piece_functions(batch, size, c_in, c_out, 5, path) for path in PATHS}
    theirs = {}
    if torch is not None:
      theirs = {layout: conv_limit._torch_pieces(  # pylint: disable=protected-access
          torch, batch, size, c_in, c_out, 5, layout == "channels_last")
                for layout in ("nchw", "channels_last")}
    now = _resolved(requested, batch, size, c_in, c_out)  # this layer's path of each piece
    for piece in PIECES:
      if piece == "input-grad" and layer == 0:
        continue
      functions = {path: ours[path][piece] for path in PATHS}
      functions.update({f"torch {layout}": pieces[piece] for layout, pieces in theirs.items()})
      seconds = dict(zip(functions, alternating_medians(list(functions.values()),
                                                        repeats=repeats)))
      current = getattr(now, _PIECE_FIELD[piece])
      row = {"stack": stack, "layer": layer, "piece": piece, "current": current,
             "shape": f"{batch}x{size}x{size}x{c_in}->{c_out}", "torch_ms": "",
             "torch_layout": ""}
      torch_seconds = None
      if theirs:
        layout = min(theirs, key=lambda name: seconds[f"torch {name}"])
        torch_seconds = seconds[f"torch {layout}"]
        row.update(torch_ms=1e3 * torch_seconds, torch_layout=layout)
      rows.append(_ratios(row, seconds, current, torch_seconds))
  return rows


def _totals(rows, stack) -> list[dict]:
  """Per piece over the layers, then every piece together; ``current`` sums each layer's
  own path."""
  totals = []
  groups = [(piece, [r for r in rows if r["piece"] == piece]) for piece in PIECES]
  groups.append(("all pieces", rows))
  for piece, mine in groups:
    if not mine:
      continue
    seconds = {p: sum(r[f"{p}_ms"] for r in mine) / 1e3 for p in PATHS}
    current_s = sum(r[f"{r['current']}_ms"] for r in mine) / 1e3  # each row's own path
    current = "per layer"
    torch_s = (sum(r["torch_ms"] for r in mine) / 1e3
               if all(r["torch_ms"] != "" for r in mine) else None)
    row = {"stack": stack, "layer": "all layers", "shape": "", "piece": piece,
           "current": current, "torch_ms": 1e3 * torch_s if torch_s else "",
           "torch_layout": "best per piece" if torch_s else ""}
    seconds_with_current = dict(seconds, **{"__current__": current_s})
    row = _ratios(row, seconds_with_current, "__current__", torch_s)
    totals.append(row)
  return totals


def _step_rows(models, batch, repeats, model_options, requested):
  if not models:
    return []
  from benchmarks import reference, training  # pylint: disable=import-outside-toplevel
  protocol = training.synthetic_protocol(False)
  rows = []
  for entry in models:
    label, name, options = entry if isinstance(entry, tuple) else (entry, entry, {})
    options = dict(options, **(model_options or {}))
    functions = {}
    for path in PATHS + ("__current__",):  # the current path: auto pieces chosen per layer
      setup = training.StepSetup(name, protocol, batch, options)
      with conv_paths.conv_path(requested if path == "__current__" else path):
        block(setup.one())  # traced and compiled now, under the path
      functions[path] = setup.one
    if reference.available() and name in reference.RECORDED_MS and not options:
      functions["reference"] = reference.make_step(name, batch)
    seconds = dict(zip(functions, alternating_medians(list(functions.values()),
                                                      repeats=repeats)))
    row = {"stack": label, "layer": "step", "piece": "train step (path on every piece)",
           "shape": f"batch {batch}", "current": requested.describe(), "torch_ms": "",
           "torch_layout": ""}
    torch_seconds = seconds.get("reference")
    if torch_seconds:
      row.update(torch_ms=1e3 * torch_seconds, torch_layout="reference step")
    rows.append(_ratios(row, seconds, "__current__", torch_seconds))
  return rows


def run(quick: bool = False, stacks=None, layers=None, models=None, repeats=None,
        model_options=None) -> list[dict]:
  """The table's rows (module docstring).

  Args:
    quick: batch 8 and 3 repeats instead of batch 64 and 7.
    stacks: ``{name: (input channels, width)}`` (default :data:`STACKS`; ``{}``: none).
    layers: indices of the layers to time (default: all five).
    models: models whose training step is timed (default :data:`STEP_MODELS`; ``()``: none).
    repeats: overrides the number of repeats.
    model_options: ``create_model`` options for the step models (e.g. ``{"channels": 8}``).
  """
  batch, default_repeats = (8, 3) if quick else (64, 7)
  repeats = repeats or default_repeats
  requested = conv_paths.requested_conv_path()
  print(cpu_summary())
  print(f"conv path asked for: {requested.describe()} (DS_SYMMETRY_CONV_PATH; auto: "
        f"{conv_paths.auto_description()}); backend {jax.default_backend()}")
  torch = _torch_setup()
  rows = []
  for stack, (width_in, width) in (STACKS if stacks is None else stacks).items():
    mine = _layer_rows(stack, width_in, width, batch, repeats, layers, torch, requested)
    rows.extend(mine + _totals(mine, stack))
  rows.extend(_step_rows(STEP_MODELS if models is None else models, batch, repeats,
                         model_options, requested))
  return rows


def main(argv=None):
  """``python -m benchmarks.conv_paths [--quick]``: the table alone."""
  import argparse  # pylint: disable=import-outside-toplevel
  from benchmarks.common import format_table  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="batch 8, 3 repeats")
  args = parser.parse_args(argv)
  print(format_table(run(quick=args.quick), COLUMNS))


if __name__ == "__main__":
  main()
