"""Tests for ds_symmetry.analysis: planted permutations and groups are recovered."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from ds_symmetry import analysis, ops


def _random_permutation(rng, d):
  p = np.zeros((d, d))
  p[np.arange(d), rng.permutation(d)] = 1.0
  return p


def _mix_of_permutations(rng, d, count=4):
  return sum(_random_permutation(rng, d) for _ in range(count)) / count


def _sinkhorn(logits, iterations=200):
  """A tiny log-domain Sinkhorn (local to the tests on purpose)."""
  log_p = np.array(logits, dtype=np.float64)
  for _ in range(iterations):
    log_p -= np.logaddexp.reduce(log_p, axis=-1, keepdims=True)
    log_p -= np.logaddexp.reduce(log_p, axis=-2, keepdims=True)
  return np.exp(log_p)


def _blur(reps, eps):
  reps = np.asarray(reps, np.float64)
  d = reps.shape[-1]
  return (1.0 - eps) * reps + eps * np.ones_like(reps) / d


# ----------------------------------------------------------------------- nearest permutation


def test_nearest_permutation_recovers_planted_permutation():
  rng = np.random.default_rng(0)
  d = 25
  planted = _random_permutation(rng, d)
  noisy = 0.7 * planted + 0.3 * _mix_of_permutations(rng, d, 5)
  np.testing.assert_allclose(noisy.sum(0), 1.0)
  np.testing.assert_allclose(noisy.sum(1), 1.0)
  p, distance = analysis.nearest_permutation(jnp.asarray(noisy))
  np.testing.assert_array_equal(p, planted)
  assert distance == pytest.approx(np.linalg.norm(noisy - planted) / 5.0)
  assert 0.0 < distance < 0.5
  np.testing.assert_array_equal(p @ np.arange(d), np.arange(d)[analysis.permutation_indices(p)])


def test_nearest_permutations_batched_and_exact():
  rng = np.random.default_rng(1)
  planted = np.stack([_random_permutation(rng, 9) for _ in range(4)])
  p, distances = analysis.nearest_permutations(_blur(planted, 0.2))
  np.testing.assert_array_equal(p, planted)
  np.testing.assert_allclose(distances, 0.2 * np.sqrt(8 / 9), rtol=1e-9)
  _, zero = analysis.nearest_permutation(planted[0])
  assert zero == 0.0


# ---------------------------------------------------------------------------------- groups


@pytest.mark.parametrize("name,kind,k,eps", [("C4", "lift", 5, 0.25), ("C4", "group", 3, 0.25),
                                             ("D4", "lift", 3, 0.3), ("D4", "group", 3, 0.2),
                                             ("flip", "lift", 5, 0.2), ("C2", "lift", 3, 0.2)])
def test_identify_recovers_planted_group_in_shuffled_order(name, kind, k, eps):
  rng = np.random.default_rng(2)
  reps = analysis.group_representations(name, k, kind)
  order = rng.permutation(reps.shape[0])
  stack = _blur(reps[order], eps)
  match = analysis.identify_group(jnp.asarray(stack, jnp.float32), k, kind)
  assert match.name == name
  np.testing.assert_array_equal(match.assignment, order)
  assert match.distance == pytest.approx(eps * np.sqrt(1 - 1 / reps.shape[-1]), abs=1e-6)
  result = analysis.distance_to_group(stack, name, k, kind)
  np.testing.assert_array_equal(result.assignment, order)
  np.testing.assert_array_equal(result.nearest, order)
  assert result.mean_distance == pytest.approx(match.distance, abs=1e-6)


def test_identify_recovers_group_mixed_with_random_permutations():
  rng = np.random.default_rng(3)
  reps = np.asarray(ops.spatial_permutations("D4", 5), np.float64)
  stack = np.stack([0.7 * p + 0.3 * _mix_of_permutations(rng, 25, 3) for p in reps])
  match = analysis.identify_group(stack, 5)
  assert match.name == "D4"
  np.testing.assert_array_equal(match.assignment, np.arange(8))
  assert match.candidates["C4"] > 0.5 and match.candidates["trivial"] > 0.5


def test_random_doubly_stochastic_stacks_are_no_group():
  rng = np.random.default_rng(4)
  for stack, kind, k in [
      (_sinkhorn(rng.normal(size=(4, 25, 25)) * 3.0), "lift", 5),
      (np.stack([_mix_of_permutations(rng, 9, 3) for _ in range(8)]), "lift", 3),
      (np.stack([_mix_of_permutations(rng, 36, 2) for _ in range(4)]), "group", 3),
  ]:
    match = analysis.identify_group(stack, k, kind)
    assert match.name is None, match.candidates
    assert match.distance > 0.5
    assert match.best_candidate is not None
    assert analysis.summarize_stack(stack, k, kind)["group"] == "none"


def test_stack_sizes_different_from_group_order():
  k = 3
  c4 = np.asarray(ops.spatial_permutations("C4", k), np.float64)
  d4 = np.asarray(ops.spatial_permutations("D4", k), np.float64)
  # C2 doubled: {e, e, r², r²} is C2, not C4, and sits in no larger group one-to-one.
  doubled = analysis.identify_group(_blur(c4[[0, 2, 0, 2]], 0.1), k)
  assert doubled.name == "C2"
  np.testing.assert_array_equal(doubled.assignment, [0, 1, 0, 1])
  assert doubled.candidates["C4"] > 0.5
  assert "D4" not in doubled.contained_in
  # C4 with 8 elements (each twice) is C4, not D4.
  twice = analysis.identify_group(_blur(np.concatenate([c4, c4]), 0.1), k)
  assert twice.name == "C4"
  # A subset of D4 that is none of the known groups: {e, r, f, fr}.
  subset = analysis.identify_group(_blur(d4[[0, 1, 4, 5]], 0.1), k)
  assert subset.name is None
  assert subset.contained_in == ("D4",)
  assert subset.candidates["D4"] == np.inf
  # C4 of 4 elements: identified, and known to lie inside D4.
  c4_match = analysis.identify_group(_blur(c4, 0.1), k)
  assert c4_match.name == "C4" and c4_match.contained_in == ("D4",)
  # Everything collapsed to the identity: the trivial group.
  assert analysis.identify_group(_blur(np.stack([np.eye(9)] * 4), 0.1), k).name == "trivial"
  # One-to-one distance leaves extra learned elements unassigned.
  result = analysis.distance_to_group(np.concatenate([c4, c4[:1]]), "C4", k)
  assert (result.assignment == -1).sum() == 1 and np.isnan(result.distances).sum() == 1
  assert result.mean_distance == 0.0 and result.covering_distance == 0.0
  # Fewer learned elements than the group: a subset is assigned.
  partial = analysis.distance_to_group(c4[[1, 3]], "D4", k)
  np.testing.assert_array_equal(partial.assignment, [1, 3])
  assert not partial.covers_group


def test_group_kind_only_compares_groups_of_matching_order():
  stack = analysis.group_representations("C4", 3, "group")
  match = analysis.identify_group(stack, 3, "group")
  assert match.name == "C4" and match.distance < 1e-6
  assert match.candidates["D4"] == np.inf and match.candidates["C2"] == np.inf
  with pytest.raises(ValueError, match="name='D4'"):
    analysis.distance_to_group(stack, "D4", 3, "group")


# --------------------------------------------------------------------------- decomposition


def test_convex_decomposition_recovers_planted_coefficients():
  rng = np.random.default_rng(5)
  basis = ops.spatial_permutations("D4", 5)
  for _ in range(3):
    planted = rng.dirichlet(np.full(8, 0.5))
    planted[rng.integers(8)] = 0.0            # a zero coefficient: the bound is active
    planted /= planted.sum()
    matrix = np.tensordot(planted, np.asarray(basis), axes=1)
    coefficients = analysis.convex_decomposition(jnp.asarray(matrix), basis)
    np.testing.assert_allclose(coefficients, planted, atol=1e-3)
    assert coefficients.min() >= 0.0 and coefficients.sum() == pytest.approx(1.0)


def test_convex_decomposition_of_outside_matrix_stays_on_simplex():
  rng = np.random.default_rng(6)
  basis = np.asarray(ops.spatial_permutations("C4", 3))
  stack = np.stack([_mix_of_permutations(rng, 9, 3), 2.0 * basis[1] - 0.5 * basis[0]])
  coefficients = analysis.convex_decomposition(stack, basis)
  assert coefficients.shape == (2, 4)
  assert np.all(coefficients >= 0.0)
  np.testing.assert_allclose(coefficients.sum(axis=1), 1.0)
  np.testing.assert_allclose(coefficients[1], [0, 1, 0, 0], atol=1e-6)
  # Optimality: no vertex of the simplex does better.
  best = np.linalg.norm(analysis.convex_combination(coefficients[0], basis) - stack[0])
  assert all(best <= np.linalg.norm(b - stack[0]) + 1e-9 for b in basis)


# ------------------------------------------------------------------------------------ Cayley


@pytest.mark.parametrize("name", ["C4", "D4", "flip"])
def test_cayley_error_is_zero_for_exact_groups(name):
  reps = ops.spatial_permutations(name, 3)
  result = analysis.cayley_error(reps)
  assert result.max_error == 0.0
  np.testing.assert_array_equal(result.table, ops.cayley_table(name))
  group_reps = ops.shift_twist_permutations(name, 3)
  assert analysis.cayley_error(group_reps).max_error < 1e-6


def test_cayley_error_is_large_for_random_stacks():
  rng = np.random.default_rng(7)
  random_permutations = np.stack([_random_permutation(rng, 25) for _ in range(4)])
  assert analysis.cayley_error(random_permutations).max_error > 1.0
  sharp = _sinkhorn(rng.normal(size=(4, 25, 25)) * 8.0)
  result = analysis.cayley_error(sharp)
  assert result.max_error > 0.5 and result.mean_error > 0.3
  assert result.errors.shape == (4, 4) and result.table.shape == (4, 4)


# ---------------------------------------------------------------------------------- summary


def test_summarize_stack_is_json_serialisable():
  stack = _blur(ops.spatial_permutations("C4", 5), 0.1)
  summary = analysis.summarize_stack(jnp.asarray(stack), 5, "lift")
  json.dumps(summary, allow_nan=False)
  assert summary["group"] == "C4"
  assert summary["group_distance"] == pytest.approx(0.1 * np.sqrt(24 / 25))
  assert summary["cayley_max_error"] < 0.2
  assert summary["mean_permutation_distance"] == pytest.approx(0.1 * np.sqrt(24 / 25))
  assert {"distance_trivial", "distance_C2", "distance_C4", "distance_flip",
          "subset_distance_D4"} <= set(summary)
  assert all(isinstance(v, (float, int, str)) for v in summary.values())


# ------------------------------------------------------------------------------------- plots


def _assert_png(path):
  data = path.read_bytes()
  assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_png_files(tmp_path):
  rng = np.random.default_rng(8)
  stack = _blur(ops.spatial_permutations("C4", 5), 0.2)
  _assert_png(analysis.plot_stack(stack, tmp_path / "stack.png", title="C4"))
  _assert_png(analysis.plot_cayley(stack, tmp_path / "sub" / "cayley.png"))
  weight = rng.normal(size=(3, 2, 25))
  _assert_png(analysis.plot_kernel_orbit(weight, stack, tmp_path / "orbit.png"))
  _assert_png(analysis.plot_kernel_orbit(weight[:, 0], stack, tmp_path / "orbit2.png",
                                         max_channels=2))


# -------------------------------------------------------------------------------- bad input


def test_bad_input_raises_value_error_naming_the_argument():
  c4 = ops.spatial_permutations("C4", 3)
  with pytest.raises(ValueError, match=r"matrix.*\(3, 4\)"):
    analysis.nearest_permutation(np.zeros((3, 4)))
  with pytest.raises(ValueError, match=r"stack.*\(4, 9\)"):
    analysis.identify_group(np.zeros((4, 9)), 3)
  with pytest.raises(ValueError, match=r"stack.*\(2, 9, 8\)"):
    analysis.cayley_error(np.zeros((2, 9, 8)))
  with pytest.raises(ValueError, match="kernel_size=5"):
    analysis.identify_group(c4, 5)
  with pytest.raises(ValueError, match="kernel_size=3"):
    analysis.distance_to_group(c4, "C4", 3, kind="group")
  with pytest.raises(ValueError, match="kernel_size must be a positive int; got 0"):
    analysis.summarize_stack(c4, 0, "lift")
  with pytest.raises(ValueError, match="name must be one of .*got 'SO2'"):
    analysis.distance_to_group(c4, "SO2", 3)
  with pytest.raises(ValueError, match="name must be one of .*got 'SO2'"):
    analysis.identify_group(c4, 3, groups=("C4", "SO2"))
  with pytest.raises(ValueError, match="kind must be one of .*got 'conv'"):
    analysis.identify_group(c4, 3, kind="conv")
  with pytest.raises(ValueError, match="threshold"):
    analysis.identify_group(c4, 3, threshold=0.0)
  with pytest.raises(ValueError, match="basis"):
    analysis.convex_decomposition(np.eye(9), np.eye(9))
  with pytest.raises(ValueError, match="matrix"):
    analysis.convex_decomposition(np.eye(4), c4)
  with pytest.raises(ValueError, match="weight"):
    analysis.plot_kernel_orbit(np.zeros((2, 16)), c4, "unused.png")
  with pytest.raises(ValueError, match="finite"):
    analysis.nearest_permutation(np.full((2, 2), np.nan))


def test_one_missing_or_stuck_element_rejects_the_group():
  d4 = np.asarray(ops.spatial_permutations("D4", 3), np.float64)
  missing = _blur(d4[[0, 1, 2, 3, 4, 5, 6, 6]], 0.05)             # element 7 never learned
  match = analysis.identify_group(missing, 3)
  assert match.name is None and match.candidates["D4"] > 1.0
  stuck = _blur(d4, 0.05)
  stuck[3] = np.full((9, 9), 1.0 / 9)                              # one element stayed uniform
  match = analysis.identify_group(stuck, 3)
  assert match.name is None and match.best_candidate == "D4"
  assert np.argmax(match.per_element) == 3


def test_importing_analysis_does_not_import_matplotlib():
  import subprocess
  import sys
  code = ("import sys, ds_symmetry.analysis, ds_symmetry.testing; "
          "assert 'matplotlib' not in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True)
