"""Weight sharing on 1-D and 3-D grids: the N-D ops against the 2-D ones and a numpy
re-derivation, and exact equivariance of 1-D and 3-D exact layers (lift then group conv)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ds_symmetry import ops
from ds_symmetry.nn import WSGroupConv, WSLiftConv
from ds_symmetry.testing import assert_equivariant, group_feature_transform, image_transform


def _normal(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_nd_ops_with_two_dims_equal_the_2d_ops():
  k, g = 3, 4
  lift_reps, group_reps = ops.spatial_permutations("C4", k), ops.shift_twist_permutations("C4", k)
  w1, w2 = _normal(0, (5, 2, k * k)), _normal(1, (3, 5, g * k * k))
  x = _normal(2, (2, 9, 9, 2))
  np.testing.assert_array_equal(ops.lift_kernels_nd(lift_reps, w1, 2),
                                ops.lift_kernels(lift_reps, w1))
  np.testing.assert_array_equal(ops.group_kernels_nd(group_reps, w2, 2),
                                ops.group_kernels(group_reps, w2))
  h = ops.lift_conv_nd(x, lift_reps, w1, spatial_dims=2)
  np.testing.assert_allclose(h, ops.lift_conv(x, lift_reps, w1), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(ops.group_conv_nd(h, group_reps, w2, padding=1, spatial_dims=2),
                             ops.group_conv(h, group_reps, w2, padding=1), rtol=1e-6, atol=1e-6)


def test_1d_lift_conv_matches_a_numpy_loop():
  k, g, c_in, c_out, length = 3, 2, 2, 3, 8
  reps = np.random.default_rng(3).random((g, k, k)).astype(np.float32)
  weight = np.random.default_rng(4).normal(size=(c_out, c_in, k)).astype(np.float32)
  x = np.random.default_rng(5).normal(size=(2, length, c_in)).astype(np.float32)
  y = np.asarray(ops.lift_conv_nd(jnp.asarray(x), jnp.asarray(reps), jnp.asarray(weight),
                                  spatial_dims=1))
  assert y.shape == (2, length - k + 1, c_out, g)
  for b, p, o, e in np.ndindex(*y.shape):
    kernels = reps[e] @ weight[o].T                               # [k, C_in]: R_e θ_{o, i}
    expected = np.sum(kernels * x[b, p:p + k])
    np.testing.assert_allclose(y[b, p, o, e], expected, rtol=1e-5, atol=1e-5)


def test_3d_group_kernels_layout_matches_numpy():
  g, k, c_out, c_in = 2, 2, 2, 3
  d = g * k ** 3
  reps = np.random.default_rng(6).random((g, d, d)).astype(np.float32)
  weight = np.random.default_rng(7).normal(size=(c_out, c_in, d)).astype(np.float32)
  kernel = np.asarray(ops.group_kernels_nd(jnp.asarray(reps), jnp.asarray(weight), 3))
  assert kernel.shape == (k, k, k, c_in * g, c_out * g)
  for o, e, i in np.ndindex(c_out, g, c_in):
    transformed = (reps[e] @ weight[o, i]).reshape(g, k, k, k)
    for h in range(g):
      np.testing.assert_allclose(kernel[..., i * g + h, o * g + e], transformed[h], rtol=1e-5,
                                 atol=1e-5)


def _exact_network(name, k_lift, k_group, spatial_dims, seed=0):
  rngs = nnx.Rngs(seed)
  lift = WSLiftConv(2, 3, k_lift, group=name, rngs=rngs)
  group = WSGroupConv(3, 2, k_group, group=name, rngs=rngs)
  assert lift.spatial_dims == group.spatial_dims == spatial_dims
  return jax.jit(lambda x: group(jax.nn.relu(lift(x))))  # one compile for all transforms


@pytest.mark.parametrize("n", [5, 8])
def test_exact_1d_shift_layers_are_equivariant(n):
  """Signal of length n, kernel length n: the lifting output is one point per shift; the group
  conv (kernel length 1) mixes the shift axis by the regular representation."""
  network = _exact_network(f"shift{n}", n, 1, spatial_dims=1)
  x = _normal(8, (3, n, 2))
  assert network(x).shape == (3, 1, 2, n)
  for g in range(n):
    assert_equivariant(network, x, image_transform(f"shift{n}", g),
                       group_feature_transform(f"shift{n}", g))
  # and it is a real check: a non-equivariant transform of the output fails
  with pytest.raises(AssertionError):
    assert_equivariant(network, x, image_transform(f"shift{n}", 1),
                       group_feature_transform(f"shift{n}", 2))


def test_exact_3d_cube_layers_are_equivariant_to_all_24_rotations():
  network = _exact_network("cube", 3, 3, spatial_dims=3)
  x = _normal(9, (1, 7, 7, 7, 2))
  y = network(x)
  assert y.shape == (1, 3, 3, 3, 2, 24)
  for g in range(24):
    assert_equivariant(network, x, image_transform("cube", g),
                       group_feature_transform("cube", g))


def test_exact_3d_c4xc4_single_layer_is_equivariant():
  """The C4xC4 layer turns act on the whole 3×3×3 grid: a kernel covering the grid."""
  network = _exact_network("C4xC4", 3, 1, spatial_dims=3)
  x = _normal(10, (2, 3, 3, 3, 2))
  for g in range(16):
    assert_equivariant(network, x, image_transform("C4xC4", g),
                       group_feature_transform("C4xC4", g))


def test_learned_layers_on_1d_and_3d_grids():
  def shape(layer, method, *args):  # abstract evaluation: shapes without running Sinkhorn
    return nnx.eval_shape(lambda m, *a: getattr(m, method)(*a), layer, *args).shape

  lift = WSLiftConv(1, 4, 5, num_elements=3, spatial_dims=1, rngs=nnx.Rngs(0))
  assert shape(lift, "representation_stack") == (3, 5, 5)
  assert shape(lift, "__call__", jnp.ones((2, 9, 1))) == (2, 5, 4, 3)
  assert shape(lift, "expanded_kernel") == (5, 1, 12)
  group = WSGroupConv(4, 2, 3, num_elements=3, spatial_dims=3, rngs=nnx.Rngs(0))
  assert shape(group, "representation_stack") == (3, 81, 81)
  assert shape(group, "__call__", jnp.ones((1, 4, 4, 4, 4, 3))) == (1, 2, 2, 2, 2, 3)


@pytest.mark.parametrize("spatial_dims, size", [(1, 5), (3, 3)])
def test_regularizers_of_learned_1d_and_3d_lifting_layers(spatial_dims, size):
  """The trainer asks every layer for its regularisers: on a 1-D or 3-D grid the geometric
  prior (defined on 2-D kernel grids) is zero and the others are finite (the App. B cube
  problem trains such a layer)."""
  lift = WSLiftConv(1, 2, size, num_elements=3, spatial_dims=spatial_dims, rngs=nnx.Rngs(0))
  terms = lift.regularizers()
  assert float(terms["isometry"]) == 0.0
  assert all(np.isfinite(float(value)) for value in terms.values())


@pytest.mark.parametrize("bad_call, argument", [
    (lambda: WSLiftConv(1, 2, 3, group="cube", spatial_dims=2, rngs=nnx.Rngs(0)),
     "spatial_dims=2 does not match group 'cube'"),
    (lambda: WSLiftConv(1, 2, 3, spatial_dims=4, rngs=nnx.Rngs(0)), "spatial_dims"),
    (lambda: WSLiftConv(1, 2, 3, group="shift8", rngs=nnx.Rngs(0)), "shift8"),
    (lambda: ops.lift_kernels_nd(jnp.ones((2, 8, 8)), jnp.ones((1, 1, 8)), 2), "reps"),
    (lambda: ops.lift_conv_nd(jnp.ones((1, 8, 1)), jnp.ones((2, 9, 9)), jnp.ones((1, 1, 9)),
                              spatial_dims=2), "x must have shape"),
    (lambda: ops.conv_nd(jnp.ones((1, 8, 1)), jnp.ones((3, 3, 1, 1))), "x must have shape"),
    (lambda: ops.conv_nd(jnp.ones((1, 8, 1)), jnp.ones((3, 1, 1)), padding=-1), "padding"),
])
def test_bad_input_is_a_clear_error(bad_call, argument):
  with pytest.raises(ValueError, match=argument):
    bad_call()


def test_analysis_reads_groups_from_the_registry():
  from ds_symmetry import analysis
  cube = np.asarray(ops.spatial_permutations("cube", 3))
  assert analysis.distance_to_group(cube[::-1], "cube", 3).covering_distance == 0.0
  assert analysis.identify_group(cube, 3, groups=("cube",)).name == "cube"
  shifts = np.asarray(ops.spatial_permutations("shift6", 6))
  assert analysis.identify_group(shifts, 6, groups=("shift6",)).name == "shift6"
  assert analysis.IMAGE_GROUPS == ("trivial", "C2", "C4", "flip", "D4", "flip_ud",
                                    "flip_diagonal", "flip_antidiagonal", "D2", "D2_diagonal")
  with pytest.raises(ValueError, match="same rank"):
    analysis.identify_group(cube, 3, groups=("cube", "C4"))
