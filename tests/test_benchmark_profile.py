"""The benchmarks' own bookkeeping: the step profiler (``benchmarks.xla_profile``) on a tiny
convolution (XLA's per-op trace is read, each convolution put in the right part) and the App.
C.4 scaling plot."""

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import xla_profile
from ds_symmetry.ops import conv_paths
from ds_symmetry.ops.kernels import conv2d
from ds_symmetry.ops.normalization import standardize


def test_a_conv_layers_forward_and_gradients_are_found_and_timed():
  # The profiler classifies XLA's convolution ops: the XLA path is forced, since ``auto`` on
  # an AVX-512 CPU computes this 8x8-output input gradient by rows (ops.conv_paths).
  x = jnp.ones((2, 12, 12, 3))
  w = jnp.full((5, 5, 3, 4), 0.1)

  def loss(x, w):
    return jnp.sum(jax.nn.relu(standardize(conv2d(x, w), (1, 2, 3))) ** 2)

  with conv_paths.conv_path("xla"):
    step = jax.jit(jax.grad(loss, (0, 1)))
    index = xla_profile.HloIndex(step.lower(x, w).compile().as_text())
    jax.block_until_ready(step(x, w))
  intervals = xla_profile.op_intervals(lambda: step(x, w), 2)
  assert intervals and all(end >= begin for _, begin, end in intervals)
  times = xla_profile.exclusive_times(intervals, 2, skip=index.is_control_flow)
  parts = xla_profile.breakdown(index, times, [xla_profile.ConvLayer(12, 5)])
  assert {"conv L0 forward", "conv L0 input-grad", "conv L0 weight-grad",
          "bias + norm + ReLU"} <= set(parts)
  assert all(ms >= 0 for ms in parts.values())


def test_exclusive_times_share_overlapping_ops():
  # a runs alone for 0-10 ms, then with b for 10-20 ms: a is charged 10 + 5, b 5.
  ms = 1_000_000
  times = xla_profile.exclusive_times([("a", 0, 20 * ms), ("b", 10 * ms, 20 * ms)], calls=1)
  np.testing.assert_allclose([times["a"], times["b"]], [15.0, 5.0])


def test_layer_scaling_plot_draws_every_variant(tmp_path):
  from benchmarks import layer_scaling  # pylint: disable=import-outside-toplevel
  rows = [{"G": g, "k": k, "variant": v, "ms": 1.0 + k, "peak_MiB": 2.0 * g}
          for g in (4, 8, 16) for k in (3, 5, 7)
          for v in ("gconv_gather", "exact_dense", "weight_sharing", "kronecker", "tied_cayley")]
  layer_scaling.plot(rows, tmp_path / "scaling.png")
  assert (tmp_path / "scaling.png").stat().st_size > 0
