"""The speed benchmarks run end to end in quick mode (those that compile whole steps: slow tier)."""

import math

import pytest


@pytest.mark.slow
def test_compute_dtype_benchmark_times_both_dtypes_of_every_mnist_model():
  from benchmarks import compute_dtype
  rows = compute_dtype.run(quick=True)
  assert [r["model"] for r in rows] == list(compute_dtype.MODELS)
  for row in rows:
    assert row["f32_ms"] > 0 and row["bf16_ms"] > 0
    assert math.isclose(row["bf16/f32"], row["bf16_ms"] / row["f32_ms"])


@pytest.mark.slow
def test_time_to_group_benchmark_reports_the_run_it_made():
  from benchmarks import time_to_group
  (row,) = time_to_group.run(quick=True)
  assert (row["channels"], row["seed"]) == (4, 0)
  if row["group"] == "undecided":
    assert row["step"] == ">40" and row["commit_s"] == ""
  else:
    assert 20 <= row["step"] <= 40 and row["commit_s"] > 0


def test_xla_cpu_flags_benchmark_runs_each_candidate_in_its_own_process(monkeypatch):
  """Two candidates (ours, and ours with NCHW operands) and one that XLA refuses: each row
  holds its own process's timings, ratios to ours, or the error its process ended with."""
  from benchmarks import xla_cpu_flags
  monkeypatch.setattr(xla_cpu_flags, "CANDIDATES", (
      xla_cpu_flags.CANDIDATES[0], xla_cpu_flags.CANDIDATES[-1],
      ("bad flag", "--xla_cpu_no_such_flag=1", "NHWC")))
  monkeypatch.setattr(xla_cpu_flags, "SHAPES", ((2, 9, 1, 4),))
  ours, nchw, bad = xla_cpu_flags.run(quick=True)
  assert ours["forward/ours"] == 1.0 and ours["with_grads/ours"] == 1.0
  assert nchw["layout"] == "NCHW" and nchw["with_grads_ms"] > 0
  assert math.isclose(nchw["with_grads/ours"], nchw["with_grads_ms"] / ours["with_grads_ms"])
  assert bad["forward_ms"].startswith("exit ") and "with_grads_ms" not in bad
