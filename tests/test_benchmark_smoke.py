"""The speed benchmarks run end to end in quick mode (slow tier: each compiles whole steps)."""

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
