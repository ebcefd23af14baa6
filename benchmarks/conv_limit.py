"""The convolutions of a training step, ours vs a well-optimised CPU library, side by side.

  python -m benchmarks.run conv_limit [--quick]

For the MNIST models' convolution stacks (batch 64, 28 px, five 5×5 'VALID' layers; ``cnn``:
1 → 64 → … → 64 channels; ``gcnn`` / ``wscnn``: 1 → 128 → … → 128, i.e. 32 channels × |G| = 4,
the same shapes for both) every piece of one training step is timed on its own: each layer's
forward convolution, input gradient (not for the first layer, whose input needs none) and
weight gradient. Ours: ``ds_symmetry.ops.conv2d`` (NHWC/HWIO, what the models call) jitted,
the gradients from ``jax.vjp``. The limit: PyTorch (oneDNN; ``torch.set_num_threads(2)``), the
library the authors' reference implementation runs on, via ``aten.convolution_backward`` with
one gradient selected at a time, in its default NCHW layout and in channels-last;
``torch_ms`` is the faster of the two. Calls alternate between JAX and PyTorch, medians of the
repeats. ``ours/torch`` > 1: we are slower.

On a GPU the limit is PyTorch/cuDNN on the same GPU when PyTorch has CUDA (else the torch
columns stay empty). PyTorch is an optional, benchmark-only dependency (``pip install -e ".[bench]"``); without it
the torch columns are left empty and the table says so. Quick mode: batch 8, fewer repeats.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import ds_symmetry  # noqa: F401  (fast CPU convolution flag, before jax starts)
from benchmarks.common import alternating_medians
from ds_symmetry.ops.kernels import conv2d

TITLE = ("Convolutions of one training step: ours (the auto path, ops.conv_paths) vs "
         "PyTorch/oneDNN, per piece")
COLUMNS = ["stack", "layer", "shape", "piece", "ours_ms", "torch_ms", "torch_layout",
           "ours/torch"]
STACKS = {"cnn": (1, 64), "gcnn / wscnn": (1, 128)}  # (input channels, width)


def _torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return torch


def layer_shapes(width_in: int, width: int, size: int = 28, k: int = 5, blocks: int = 5):
  """``[(H_in, C_in, C_out), ...]`` of the five MNIST blocks."""
  return [(size - (k - 1) * i, width_in if i == 0 else width, width) for i in range(blocks)]


def _jax_pieces(batch, size, c_in, c_out, k):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, size, size, c_in), np.float32))
  w = jnp.asarray(rng.standard_normal((k, k, c_in, c_out), np.float32) / np.sqrt(k * k * c_in))
  out = size - k + 1
  g = jnp.asarray(rng.standard_normal((batch, out, out, c_out), np.float32))
  forward = jax.jit(lambda x, w: conv2d(x, w))
  input_grad = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv2d(x, w), x)[1](g)[0])
  weight_grad = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv2d(x, w), w)[1](g)[0])
  return {"forward": lambda: forward(x, w), "input-grad": lambda: input_grad(x, w, g),
          "weight-grad": lambda: weight_grad(x, w, g)}


def _torch_pieces(torch, batch, size, c_in, c_out, k, channels_last: bool, device="cpu"):
  generator = torch.Generator().manual_seed(0)
  x = torch.randn(batch, c_in, size, size, generator=generator).to(device)
  w = (torch.randn(c_out, c_in, k, k, generator=generator) / np.sqrt(k * k * c_in)).to(device)
  out = size - k + 1
  g = torch.randn(batch, c_out, out, out, generator=generator).to(device)
  if channels_last:
    x, w, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, w, g))
  x.requires_grad_(True)
  w.requires_grad_(True)
  backward = torch.ops.aten.convolution_backward

  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def forward():  # with autograd recording, as in training (no inference-only kernels)
    out = torch.nn.functional.conv2d(x, w)
    sync()
    return out

  def grad(mask):
    with torch.no_grad():
      out = backward(g, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, mask)
    sync()
    return out

  return {"forward": forward, "input-grad": lambda: grad([True, False, False]),
          "weight-grad": lambda: grad([False, True, False])}


def run(quick: bool = False, stacks=None) -> list[dict]:
  batch, repeats = (8, 3) if quick else (64, 7)
  torch, device = _torch(), "cpu"
  if torch is None:
    print("conv_limit: PyTorch is not installed (pip install -e '.[bench]'); torch columns "
          "left empty")
  elif jax.default_backend() == "gpu" and torch.cuda.is_available():
    device = "cuda"  # the limit beside a GPU is cuDNN on the same GPU
  elif jax.default_backend() != "cpu":
    print(f"conv_limit: JAX runs on {jax.default_backend()} and PyTorch has no such device; "
          "torch columns left empty")
    torch = None
  else:
    torch.set_num_threads(2)
  rows = []
  for stack, (width_in, width) in (stacks or STACKS).items():
    for layer, (size, c_in, c_out) in enumerate(layer_shapes(width_in, width)):
      ours = _jax_pieces(batch, size, c_in, c_out, 5)
      theirs = {}
      if torch is not None:
        theirs = {"nchw": _torch_pieces(torch, batch, size, c_in, c_out, 5, False, device),
                  "channels_last": _torch_pieces(torch, batch, size, c_in, c_out, 5, True,
                                                 device)}
      for piece in ours:
        if piece == "input-grad" and layer == 0:
          continue
        functions = {"ours": ours[piece]}
        functions.update({layout: pieces[piece] for layout, pieces in theirs.items()})
        seconds = dict(zip(functions, alternating_medians(list(functions.values()),
                                                          repeats=repeats)))
        row = {"stack": stack, "layer": layer, "piece": piece,
               "shape": f"{batch}x{size}x{size}x{c_in}->{c_out}",
               "ours_ms": 1e3 * seconds["ours"], "torch_ms": "", "torch_layout": "",
               "ours/torch": ""}
        if theirs:
          layout = min(theirs, key=lambda name: seconds[name])
          row.update(torch_ms=1e3 * seconds[layout], torch_layout=layout,
                     **{"ours/torch": seconds["ours"] / seconds[layout]})
        rows.append(row)
    rows.append(_total(rows, stack))
  return rows


def _total(rows, stack) -> dict:
  mine = [r for r in rows if r["stack"] == stack]
  ours = sum(r["ours_ms"] for r in mine)
  total = {"stack": stack, "layer": "all", "shape": "", "piece": "forward + backward",
           "ours_ms": ours, "torch_ms": "", "torch_layout": "", "ours/torch": ""}
  if all(r["torch_ms"] != "" for r in mine):
    theirs = sum(r["torch_ms"] for r in mine)
    total.update(torch_ms=theirs, torch_layout="best per piece", **{"ours/torch": ours / theirs})
  return total


def main():
  from benchmarks.common import format_table  # pylint: disable=import-outside-toplevel
  print(format_table(run(), COLUMNS))


if __name__ == "__main__":
  main()
