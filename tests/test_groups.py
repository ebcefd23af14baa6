"""Exact representations: rot90/flip identities, group axioms, shift-twist structure."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from ds_symmetry import ops


@pytest.mark.parametrize("k", [3, 4, 5, 7])
@pytest.mark.parametrize("order", [1, 2, 4])
def test_rotation_permutations_equal_rot90(k, order):
  reps = ops.rotation_permutations(k, order)
  assert reps.shape == (order, k * k, k * k)
  kernel = np.random.default_rng(k).normal(size=(k, k)).astype(np.float32)
  for g in range(order):
    expected = np.rot90(kernel, g * 4 // order).reshape(-1)
    np.testing.assert_array_equal(np.asarray(reps[g] @ kernel.reshape(-1)), expected)


@pytest.mark.parametrize("k", [3, 4, 5])
def test_flip_and_dihedral_match_numpy(k):
  kernel = np.arange(k * k, dtype=np.float32).reshape(k, k)
  flips = ops.flip_permutations(k)
  np.testing.assert_array_equal(np.asarray(flips[1] @ kernel.reshape(-1)),
                                np.flip(kernel, axis=1).reshape(-1))
  d4 = ops.dihedral_permutations(k)
  assert d4.shape == (8, k * k, k * k)
  for f, r in itertools.product(range(2), range(4)):
    expected = np.rot90(np.flip(kernel, axis=1) if f else kernel, r).reshape(-1)
    np.testing.assert_array_equal(np.asarray(d4[f * 4 + r] @ kernel.reshape(-1)), expected)


def _is_permutation_stack(reps):
  reps = np.asarray(reps)
  return (np.all((reps == 0) | (reps == 1)) and np.all(reps.sum(-1) == 1)
          and np.all(reps.sum(-2) == 1))


@pytest.mark.parametrize("name", ops.GROUP_NAMES)
@pytest.mark.parametrize("kind", ["spatial", "shift_twist", "regular"])
def test_group_axioms(name, kind):
  k = 3
  if kind == "spatial":
    reps = ops.spatial_permutations(name, k)
  elif kind == "shift_twist":
    reps = ops.shift_twist_permutations(name, k)
  else:
    reps = ops.regular_permutations(name)
  reps = np.asarray(reps)
  order = ops.group_order(name)
  table = ops.cayley_table(name)
  assert reps.shape[0] == order and _is_permutation_stack(reps)
  # identity is element 0
  np.testing.assert_array_equal(reps[0], np.eye(reps.shape[-1]))
  # closure and homomorphism: R_a R_b == R_{ab}
  for a, b in itertools.product(range(order), repeat=2):
    np.testing.assert_array_equal(np.asarray(ops.compose(reps[a], reps[b])), reps[table[a, b]])
  # inverses
  inverse = ops.inverse_indices(name)
  for g in range(order):
    np.testing.assert_array_equal(np.asarray(ops.invert(reps[g])), reps[inverse[g]])
  # faithful: all elements distinct
  assert len({r.tobytes() for r in reps}) == order


def test_cayley_tables_are_latin_squares_and_c4_is_cyclic():
  for name in ops.GROUP_NAMES:
    table = ops.cayley_table(name)
    order = ops.group_order(name)
    for row in table:
      assert sorted(row) == list(range(order))
    for col in table.T:
      assert sorted(col) == list(range(order))
  np.testing.assert_array_equal(ops.cayley_table("C4"),
                                (np.arange(4)[:, None] + np.arange(4)[None]) % 4)
  d4 = ops.cayley_table("D4")
  assert not np.array_equal(d4, d4.T)  # D4 is not abelian


def test_shift_twist_c4_rotates_slices_and_shifts_group_axis():
  k = 5
  reps = np.asarray(ops.shift_twist_permutations("C4", k))
  psi = np.random.default_rng(0).normal(size=(4, k, k)).astype(np.float32)
  for g in range(4):
    out = (reps[g] @ psi.reshape(-1)).reshape(4, k, k)
    for h in range(4):
      np.testing.assert_array_equal(out[h], np.rot90(psi[(h - g) % 4], g))


@pytest.mark.parametrize("bad_call, argument", [
    (lambda: ops.rotation_permutations(3, 3), "order"),
    (lambda: ops.rotation_permutations(0, 4), "kernel_size"),
    (lambda: ops.spatial_permutations("C8", 3), "group name"),
    (lambda: ops.shift_twist_permutations("SO2", 3), "group name"),
    (lambda: ops.invert(jnp.ones((2, 3, 4))), "permutations"),
    (lambda: ops.compose(jnp.ones((3, 3)), jnp.ones((4, 4))), "compose"),
])
def test_bad_input_is_a_clear_error(bad_call, argument):
  with pytest.raises(ValueError, match=argument):
    bad_call()
