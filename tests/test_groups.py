"""The group registry: axioms of every registered group, actions checked against independent
numpy re-derivations (rot90/flip/roll, 3×3 rotation matrices), C8's documented approximation."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from ds_symmetry import ops

# Every registered group, plus members of the shift<n> family, with a grid side it acts on.
EXACT = [(name, 3) for name in ops.group_names(permutation=True)] + [("shift5", 5),
                                                                     ("shift8", 8)]


def _is_permutation_stack(reps):
  reps = np.asarray(reps)
  return (np.all((reps == 0) | (reps == 1)) and np.all(reps.sum(-1) == 1)
          and np.all(reps.sum(-2) == 1))


def test_registry_lists_every_group_once_and_filters_by_rank():
  d4_subgroups = ("flip_ud", "flip_diagonal", "flip_antidiagonal", "D2", "D2_diagonal")
  assert ops.GROUP_NAMES == ("trivial", "C2", "C4", "flip", "D4") + d4_subgroups + (
      "C8", "cube", "C4xC4", "C4xC4xC4")
  assert ops.group_names(spatial_dims=2, permutation=True) == (
      "trivial", "C2", "C4", "flip", "D4") + d4_subgroups
  assert ops.group_names(spatial_dims=3) == ("cube", "C4xC4", "C4xC4xC4")
  assert [ops.group_order(n) for n in ("C8", "cube", "C4xC4", "C4xC4xC4", "shift7")] == [
      8, 24, 16, 64, 7]
  assert ops.group_spatial_dims("shift7") == 1 and "shift7" not in ops.group_names()


@pytest.mark.parametrize("name, k", EXACT)
@pytest.mark.parametrize("kind", ["spatial", "shift_twist", "regular"])
def test_group_axioms(name, k, kind):
  """Closure, identity, inverses and faithfulness of the representations, through the
  registry, and the Cayley table's own axioms (associativity, Latin square)."""
  if kind == "spatial":
    reps = ops.spatial_permutations(name, k)
  elif kind == "shift_twist":
    if name == "C4xC4xC4":
      pytest.skip("64 matrices of 1728×1728: the regular and spatial parts are checked")
    reps = ops.shift_twist_permutations(name, k)
  else:
    reps = ops.regular_permutations(name)
  reps = np.asarray(reps)
  order = ops.group_order(name)
  table = ops.cayley_table(name)
  assert table.dtype == np.int32 and table.shape == (order, order)
  assert reps.shape[0] == order and _is_permutation_stack(reps)
  np.testing.assert_array_equal(reps[0], np.eye(reps.shape[-1]))          # identity first
  # Permutations as index maps, (P @ v)[i] = v[idx[i]]; (P_a P_b) has index idx_b[idx_a].
  idx = np.argmax(reps, axis=2)
  for a, b in itertools.product(range(order), repeat=2):                   # homomorphism
    np.testing.assert_array_equal(idx[b][idx[a]], idx[table[a, b]])
  inverse = ops.inverse_indices(name)
  for g in range(order):                                                   # inverses
    np.testing.assert_array_equal(reps[g].T, reps[inverse[g]])
  assert len({i.tobytes() for i in idx}) == order                          # faithful
  for row, col in zip(table, table.T):
    assert sorted(row) == list(range(order)) and sorted(col) == list(range(order))
  _check_associative(table)


def _check_associative(table):
  """``(ab)c == a(bc)`` for all a, b, c."""
  order = np.arange(len(table))
  left = table[table[:, :, None], order[None, None, :]]     # (ab)c
  right = table[order[:, None, None], table[None, :, :]]    # a(bc)
  np.testing.assert_array_equal(left, right)


def test_cayley_tables_cyclic_abelian_and_not():
  c4 = (np.arange(4)[:, None] + np.arange(4)[None]) % 4
  np.testing.assert_array_equal(ops.cayley_table("C4"), c4)
  np.testing.assert_array_equal(ops.cayley_table("shift6"),
                                (np.arange(6)[:, None] + np.arange(6)[None]) % 6)
  for name in ("D4", "cube"):
    assert not np.array_equal(ops.cayley_table(name), ops.cayley_table(name).T)
  for name in ("C4xC4", "C4xC4xC4"):
    np.testing.assert_array_equal(ops.cayley_table(name), ops.cayley_table(name).T)
  # C4xC4 is C4 × C4: (a, b)(a', b') = (a + a', b + b').
  table = ops.cayley_table("C4xC4")
  for (a, b), (c, d) in itertools.product(itertools.product(range(4), repeat=2), repeat=2):
    assert table[4 * a + b, 4 * c + d] == 4 * ((a + c) % 4) + (b + d) % 4


@pytest.mark.parametrize("k", [3, 4, 5])
def test_2d_actions_match_numpy(k):
  kernel = np.random.default_rng(k).normal(size=(k, k)).astype(np.float32)
  vec = kernel.reshape(-1)

  def act(name, g):
    return np.asarray(ops.spatial_permutations(name, k)[g] @ vec).reshape(k, k)

  for g in range(4):
    np.testing.assert_array_equal(act("C4", g), np.rot90(kernel, g))
  for g in range(2):
    np.testing.assert_array_equal(act("C2", g), np.rot90(kernel, 2 * g))
  np.testing.assert_array_equal(act("flip", 1), np.flip(kernel, axis=1))
  for f, r in itertools.product(range(2), range(4)):
    np.testing.assert_array_equal(act("D4", f * 4 + r),
                                  np.rot90(np.flip(kernel, axis=1) if f else kernel, r))
  for g in range(0, 8, 2):                                  # C8's even elements are exact
    np.testing.assert_allclose(act("C8", g), np.rot90(kernel, g // 2), atol=1e-6)


@pytest.mark.parametrize("n", [4, 7])
def test_shift_is_np_roll(n):
  signal = np.random.default_rng(n).normal(size=n).astype(np.float32)
  reps = np.asarray(ops.spatial_permutations(f"shift{n}", n))
  assert reps.shape == (n, n, n)
  for g in range(n):
    np.testing.assert_array_equal(reps[g] @ signal, np.roll(signal, g))


def _cube_rotation_matrices():
  """The 24 integer 3×3 matrices with orthonormal columns and determinant +1."""
  result = []
  for perm in itertools.permutations(range(3)):
    for signs in itertools.product((1, -1), repeat=3):
      matrix = np.zeros((3, 3), dtype=int)
      matrix[np.arange(3), perm] = signs
      if round(np.linalg.det(matrix)) == 1:
        result.append(matrix)
  return result


@pytest.mark.parametrize("k", [3, 4])
def test_cube_is_the_rotation_group_of_the_grid(k):
  """Each element moves grid points by one of the 24 rotation matrices about the centre, and
  all 24 occur: an independent derivation from coordinates, not from axis shuffles."""
  reps = np.asarray(ops.spatial_permutations("cube", k))
  centre = (k - 1) / 2
  points = np.array(list(itertools.product(range(k), repeat=3)), dtype=float) - centre
  found = set()
  for g in range(24):
    source = np.argmax(reps[g], axis=1)            # (g·K)[p] = K[source[p]]
    moved = points[source]
    for index, matrix in enumerate(_cube_rotation_matrices()):
      if np.allclose(moved, points @ matrix.T):
        found.add(index)
        break
    else:
      pytest.fail(f"cube element {g} is not a rotation of the grid")
  assert len(found) == 24


def test_layer_turns_and_the_c4xc4_embedding():
  grid = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
  reps3 = np.asarray(ops.spatial_permutations("C4xC4xC4", 3))
  for a, b, c in itertools.product(range(4), repeat=3):
    expected = np.stack([np.rot90(grid[0], a), np.rot90(grid[1], b), np.rot90(grid[2], c)])
    np.testing.assert_array_equal((reps3[16 * a + 4 * b + c] @ grid.reshape(-1)).reshape(3, 3, 3),
                                  expected)
  reps2 = np.asarray(ops.spatial_permutations("C4xC4", 3))
  for index, image in enumerate(ops.c4xc4_in_c4xc4xc4()):
    np.testing.assert_array_equal(reps2[index], reps3[image])
  # Rotations about two different axes do not commute: why C4xC4 is built from layer turns.
  cube = np.asarray(ops.spatial_permutations("cube", 3))
  assert any(not np.array_equal(a @ b, b @ a) for a in cube for b in cube)


@pytest.mark.parametrize("k", [5, 7])
def test_c8_odd_elements_interpolate_a_linear_ramp_exactly(k):
  """Bilinear interpolation reproduces linear functions, so where the rotated pixel centre
  stays inside the grid, L[1] maps a ramp to the ramp rotated by 45° (rot90's sense)."""
  reps = np.asarray(ops.spatial_permutations("C8", k), dtype=np.float64)
  centre = (k - 1) / 2
  y, x = np.meshgrid(np.arange(k) - centre, np.arange(k) - centre, indexing="ij")
  ramp = 0.3 * y + 0.7 * x
  angle = np.pi / 4
  # rot90 reads out(y, x) = in(x, −y): the source of (y, x) is R(y, x) with R the 90° turn;
  # for 45°: source = (cos·y + sin·x, −sin·y + cos·x).
  source_y, source_x = np.cos(angle) * y + np.sin(angle) * x, -np.sin(angle) * y + np.cos(angle) * x
  inside = (np.abs(source_y) <= centre) & (np.abs(source_x) <= centre)
  out = (reps[1] @ ramp.reshape(-1)).reshape(k, k)
  np.testing.assert_allclose(out[inside], (0.3 * source_y + 0.7 * source_x)[inside], atol=1e-5)
  assert inside.sum() > k * k // 2                     # the check covers most of the grid


def test_c8_is_approximate_as_documented():
  errors = ops.orthogonality_error("C8", 5)
  np.testing.assert_allclose(errors[::2], 0.0, atol=1e-6)            # even: exact rot90
  assert np.all((errors[1::2] > 0.6) & (errors[1::2] < 0.75))        # odd: ~0.70, not orthogonal
  np.testing.assert_allclose(ops.orthogonality_error("C4", 5), 0.0)
  reps = np.asarray(ops.spatial_permutations("C8", 5), dtype=np.float64)
  composed = np.linalg.norm(reps[1] @ reps[1] - reps[2]) / 5.0
  assert 0.6 < composed < 0.8                                        # only approximately C8


def test_shift_twist_c4_rotates_slices_and_shifts_group_axis():
  k = 5
  reps = np.asarray(ops.shift_twist_permutations("C4", k))
  psi = np.random.default_rng(0).normal(size=(4, k, k)).astype(np.float32)
  for g in range(4):
    out = (reps[g] @ psi.reshape(-1)).reshape(4, k, k)
    for h in range(4):
      np.testing.assert_array_equal(out[h], np.rot90(psi[(h - g) % 4], g))


def test_apply_element_works_on_jax_and_numpy_arrays_on_given_axes():
  volume = np.random.default_rng(1).normal(size=(2, 4, 4, 4, 3)).astype(np.float32)
  for g in (5, 17):
    expected = ops.apply_element("cube", g, volume, axes=(1, 2, 3))
    assert isinstance(expected, np.ndarray)
    got = ops.apply_element("cube", g, jnp.asarray(volume), axes=(1, 2, 3))
    np.testing.assert_array_equal(np.asarray(got), expected)
  image = np.random.default_rng(2).normal(size=(6, 6)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(ops.apply_element("C8", 1, jnp.asarray(image))),
                             ops.apply_element("C8", 1, image), atol=1e-6)


def test_a_new_group_needs_one_registration():
  spec = ops.GroupSpec("test_swap", 2, 1, lambda g, a, axes: a[::-1] if g else a,
                       faithful_size=3, description="reversal of a 1-D grid")
  ops.register_group(spec)
  try:
    np.testing.assert_array_equal(ops.cayley_table("test_swap"), [[0, 1], [1, 0]])
    reps = np.asarray(ops.shift_twist_permutations("test_swap", 3))
    assert reps.shape == (2, 6, 6) and _is_permutation_stack(reps)
  finally:
    from ds_symmetry.ops import groups
    del groups._REGISTRY["test_swap"]  # pylint: disable=protected-access


@pytest.mark.parametrize("bad_call, argument", [
    (lambda: ops.spatial_permutations("C4", 0), "kernel_size"),
    (lambda: ops.spatial_permutations("SO2", 3), "group name"),
    (lambda: ops.shift_twist_permutations("SO2", 3), "group name"),
    (lambda: ops.spatial_permutations("shift6", 5), "shift6.*divides 6.*\\(5,\\)"),
    (lambda: ops.spatial_permutations("C4xC4xC4", 4), "3 slices"),
    (lambda: ops.apply_element("C4", 4, np.zeros((3, 3))), "index"),
    (lambda: ops.apply_element("cube", 1, np.zeros((3, 3, 3)), axes=(0, 1)), "axes"),
    (lambda: ops.apply_element("cube", 1, np.zeros((3, 3, 4))), "cubic"),
    (lambda: ops.register_group(ops.GroupSpec("bad", 2, 2, lambda g, a, axes: a,
                                              permutation=False)), "cayley"),
    (lambda: ops.register_group(ops.GroupSpec("bad", 2, 4, lambda g, a, axes: a)),
     "spatial_dims"),
])
def test_bad_input_is_a_clear_error(bad_call, argument):
  with pytest.raises(ValueError, match=argument):
    bad_call()
