"""Structured weight sharing (Kronecker / tied / Cayley-derived factors), the constraint
ablation, the G-CNN kernel options and the geometric prior: checked against exact identities
and numpy re-derivations."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ds_symmetry.models import create_model
from ds_symmetry.nn import count_parameters, stacks, weight_sharing_layers
from ds_symmetry.nn.weight_sharing import WSGroupConv, WSLiftConv
from ds_symmetry.ops import groups
from ds_symmetry.ops import structure
from ds_symmetry.ops.kernels import group_kernels
from ds_symmetry.ops.sinkhorn import sinkhorn


def _structure(sharing: str) -> dict:
  """``create_model``'s ``factorise`` / ``tie`` of a group layer's ``sharing`` value."""
  factorise, tie = stacks.STRUCTURES[sharing]
  return {"factorise": factorise, "tie": tie}


def _random_doubly_stochastic(key, n, d):
  return sinkhorn(jax.random.normal(key, (n, d, d)), num_iters=200)


def test_kronecker_kernels_equal_the_materialised_stack():
  keys = jax.random.split(jax.random.key(0), 3)
  a = _random_doubly_stochastic(keys[0], 4, 4)
  b = _random_doubly_stochastic(keys[1], 4, 9)
  weight = jax.random.normal(keys[2], (5, 3, 36))
  # numpy re-derivation of the stack: R_g = kron(A_g, B_g)
  stack = np.stack([np.kron(np.asarray(a[g]), np.asarray(b[g])) for g in range(4)])
  expected = group_kernels(jnp.asarray(stack), weight)
  got = structure.kronecker_group_kernels(a, b, weight)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_kronecker_of_doubly_stochastic_is_doubly_stochastic():
  keys = jax.random.split(jax.random.key(1), 2)
  a, b = _random_doubly_stochastic(keys[0], 3, 4), _random_doubly_stochastic(keys[1], 3, 9)
  product = np.stack([np.kron(a[g], b[g]) for g in range(3)])
  np.testing.assert_allclose(product.sum(-1), 1.0, atol=1e-4)
  np.testing.assert_allclose(product.sum(-2), 1.0, atol=1e-4)


def _set_logits(logits_variable, matrices):
  """Learned matrices := ``matrices`` exactly (log of 0/1 entries: -inf gives exact zeros)."""
  logits_variable[...] = jnp.log(jnp.asarray(matrices, jnp.float32))


@pytest.mark.parametrize("group_name", ["C4", "D4"])
def test_kronecker_layer_with_exact_factors_is_the_exact_group_layer(group_name):
  order, k = groups.group_order(group_name), 3
  rngs = nnx.Rngs(0)
  learned = WSGroupConv(2, 3, k, num_elements=order, factorise="kronecker", rngs=rngs)
  exact = WSGroupConv(2, 3, k, group=group_name, rngs=nnx.Rngs(1))
  exact.weight[...] = learned.weight[...]
  _set_logits(learned.group_logits, groups.regular_permutations(group_name)[1:])
  _set_logits(learned.spatial_logits, groups.spatial_permutations(group_name, k)[1:])
  x = jax.random.normal(jax.random.key(2), (2, 7, 7, 2, order))
  np.testing.assert_allclose(learned(x), exact(x), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(learned.representation_stack(),
                             groups.shift_twist_permutations(group_name, k), atol=1e-6)


def test_soft_cayley_factors_recover_the_regular_representation_in_any_labelling():
  spatial = np.asarray(groups.spatial_permutations("D4", 3))
  table = groups.cayley_table("D4")
  order = np.random.default_rng(0).permutation(8)
  order = np.concatenate([[0], order[order != 0]])  # identity first, the rest shuffled
  factors = np.asarray(structure.soft_cayley_factors(jnp.asarray(spatial[order])))
  position = np.argsort(order)
  for i, g in enumerate(order):
    expected = np.zeros((8, 8))
    for q, element in enumerate(order):
      expected[position[table[g, element]], q] = 1.0
    np.testing.assert_allclose(factors[i], expected, atol=1e-6)


def test_isometry_loss_is_zero_exactly_on_grid_isometries():
  k = 5
  d4 = groups.spatial_permutations("D4", k)
  assert float(structure.isometry_loss(d4)) < 1e-10
  weights = jax.random.dirichlet(jax.random.key(0), jnp.ones(8), (3,))
  blends = jnp.einsum("ng,gij->nij", weights, d4)
  assert float(structure.isometry_loss(blends)) < 1e-10
  rng = np.random.default_rng(0)
  for _ in range(5):
    scrambled = np.eye(k * k)[rng.permutation(k * k)][None]
    assert float(structure.isometry_loss(jnp.asarray(scrambled, jnp.float32))) > 1e-3
  uniform = jnp.full((1, k * k, k * k), 1.0 / (k * k))
  assert float(structure.isometry_loss(uniform)) > 1e-3


def test_disk_mask_drops_the_corners_and_is_rotation_invariant():
  mask = np.asarray(structure.disk_mask(5)).reshape(5, 5)
  assert mask.sum() == 21 and mask[0, 0] == mask[0, 4] == mask[4, 0] == mask[4, 4] == 0
  np.testing.assert_array_equal(mask, np.rot90(mask))
  assert np.asarray(structure.disk_mask(1)).tolist() == [1.0]


def test_disk_masked_gcnn_kernels_are_zero_outside_the_disk_and_still_invariant():
  model = create_model("gcnn", num_classes=10, rngs=nnx.Rngs(0), channels=4,
                       kernel_mask="disk", weight_init="se2cnn")
  corners = np.asarray(1.0 - structure.disk_mask(5)).reshape(5, 5).astype(bool)
  for _, layer in weight_sharing_layers(model):
    kernel = np.asarray(layer.expanded_kernel())
    assert np.all(kernel[corners] == 0.0)
  x = jax.random.normal(jax.random.key(3), (2, 28, 28, 1))
  y, y_rotated = model(x), model(jnp.rot90(x, 1, axes=(1, 2)))
  np.testing.assert_allclose(y_rotated, y, rtol=1e-4, atol=1e-5 * float(jnp.abs(y).max()))


def test_se2cnn_init_has_the_reference_gcnn_scale():
  lift = WSLiftConv(16, 64, 5, group="C4", weight_init="se2cnn", rngs=nnx.Rngs(0))
  conv = WSGroupConv(16, 64, 5, group="C4", weight_init="se2cnn", rngs=nnx.Rngs(0))
  np.testing.assert_allclose(np.std(lift.weight[...]), 2.0 / np.sqrt(16 * 25), rtol=0.05)
  np.testing.assert_allclose(np.std(conv.weight[...]), 2.0 / np.sqrt(16 * 4 * 25), rtol=0.05)


@pytest.mark.parametrize("model_name,k,lift_d,n_group_layers", [("wscnn", 5, 25, 4),
                                                                 ("wsresnet", 7, 49, 4)])
def test_parameter_counts_of_each_sharing(model_name, k, lift_d, n_group_layers):
  g, learned = 4, 3
  group_d = g * k * k
  expected = {
      "full": learned * lift_d ** 2 + n_group_layers * learned * group_d ** 2,
      "kronecker": learned * lift_d ** 2 + n_group_layers * learned * (g * g + lift_d ** 2),
      "tied": learned * lift_d ** 2 + n_group_layers * learned * g * g,
      "tied_shared": learned * lift_d ** 2 + learned * g * g,
      "tied_cayley": learned * lift_d ** 2,
  }
  assert expected["full"] == {"wscnn": 121_875, "wsresnet": 468_195}[model_name]  # the paper's
  for sharing, count in expected.items():
    model = create_model(model_name, num_classes=10, rngs=nnx.Rngs(0), channels=4,
                         **_structure(sharing))
    assert count_parameters(model)["representation"] == count, sharing
  # The study's best: one weight per candidate generator (7 distinct cyclic stacks), nothing else.
  model = create_model(model_name, num_classes=10, rngs=nnx.Rngs(0), channels=4,
                       factorise="kronecker", tie="cyclic", elements="power_blend",
                       constraint="isometries")
  assert count_parameters(model)["representation"] == 7


# One sharing in the default set; the others (13-24 s each, mostly compilation) in the slow set.
@pytest.mark.parametrize("sharing", [pytest.param("kronecker", marks=pytest.mark.slow),
                                     pytest.param("tied", marks=pytest.mark.slow),
                                     pytest.param("tied_shared", marks=pytest.mark.slow),
                                     "tied_cayley"])
def test_factorised_models_run_and_tied_layers_share_the_lifting_stack(sharing):
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=2, num_blocks=3,
                       **_structure(sharing))
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 1))
  assert model(x).shape == (2, 10)
  layers = [layer for _, layer in weight_sharing_layers(model)]
  lift = layers[0]
  for layer in layers[1:]:
    _, spatial = layer.factors()
    if sharing.startswith("tied"):
      np.testing.assert_array_equal(spatial, lift.representation_stack())
  # gradients reach the lifting logits (through every group layer when tied)
  grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
  grad = np.asarray(grads["convs"][0]["logits"].get_value())
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_shared_group_factors_are_one_parameter():
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=4,
                       factorise="kronecker", tie="shared")
  layers = [layer for _, layer in weight_sharing_layers(model)][1:]
  assert all(layer.group_logits is layers[0].group_logits for layer in layers)
  regularised = [layer.regularizers()["norm"] for layer in layers]
  assert float(regularised[0]) > 0 and all(float(v) == 0.0 for v in regularised[1:])


@pytest.mark.parametrize("constraint", ["sinkhorn", "softmax", "none"])
def test_constraints_start_from_the_same_stack_and_keep_their_marginals(constraint):
  reference = WSLiftConv(1, 2, 3, logits_init="balanced_uniform", rngs=nnx.Rngs(0))
  layer = WSLiftConv(1, 2, 3, logits_init="balanced_uniform", constraint=constraint,
                     rngs=nnx.Rngs(0))
  stack = np.asarray(layer.representation_stack())
  np.testing.assert_allclose(stack.sum(-1), 1.0, atol=1e-4)  # rows: all three at init
  if constraint != "softmax":
    np.testing.assert_allclose(stack, reference.representation_stack(), atol=1e-6)
  layer.logits[...] = layer.logits[...] + 3.0 * jax.random.normal(jax.random.key(1),
                                                                   layer.logits[...].shape)
  moved = np.asarray(layer.representation_stack())
  if constraint == "softmax":
    np.testing.assert_allclose(moved.sum(-1), 1.0, atol=1e-5)
    assert np.abs(moved.sum(-2) - 1.0).max() > 1e-2  # columns are free
  elif constraint == "none":
    assert moved.min() < 0  # nothing keeps it stochastic
  if constraint != "sinkhorn":
    assert float(layer.regularizers()["norm"]) == 0.0


def test_bad_options_name_the_argument():
  with pytest.raises(ValueError, match="tie must be one of"):
    WSGroupConv(2, 2, 3, factorise="kronecker", tie="tied", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="tie='spatial' needs spatial_source"):
    WSGroupConv(2, 2, 3, factorise="kronecker", tie="spatial", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="constraint"):
    WSLiftConv(2, 2, 3, constraint="rows", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="kernel_mask"):
    WSLiftConv(2, 2, 3, kernel_mask="circle", rngs=nnx.Rngs(0))
  lift = WSLiftConv(2, 2, 5, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="kernel_size=3"):
    WSGroupConv(2, 2, 3, factorise="kronecker", tie="cayley", spatial_source=lift,
                rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="do not apply to the exact model"):
    create_model("gcnn", num_classes=10, rngs=nnx.Rngs(0), factorise="kronecker", tie="spatial")


def test_every_sharing_of_an_exact_group_is_invariant():
  """Tied, Cayley-derived stacks built from an exact C4 lifting stack give an exactly
  rotation-invariant network, in whatever order the learned elements come."""
  order = [0, 3, 1, 2]
  spatial = np.asarray(groups.spatial_permutations("C4", 5))[order]
  for sharing in ("tied_cayley",):
    model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=3, num_blocks=3,
                         **_structure(sharing))
    lift = weight_sharing_layers(model)[0][1]
    _set_logits(lift.logits, spatial[1:])
    x = jax.random.normal(jax.random.key(4), (2, 28, 28, 1))
    y = model(x)
    for turns in (1, 2, 3):
      np.testing.assert_allclose(model(jnp.rot90(x, turns, axes=(1, 2))), y, rtol=1e-4,
                                 atol=1e-5 * float(jnp.abs(y).max()))


def test_all_labellings_of_c4_are_found():
  for perm in itertools.permutations(range(1, 4)):
    order = np.array((0,) + perm)
    factors = structure.soft_cayley_factors(
        jnp.asarray(np.asarray(groups.spatial_permutations("C4", 3))[order]))
    assert np.allclose(np.asarray(factors).sum(-1), 1.0, atol=1e-5)
    assert np.all(np.isin(np.round(np.asarray(factors), 5), [0.0, 1.0]))


@pytest.mark.slow
def test_layer_scaling_benchmark_times_the_factorised_layers():
  from benchmarks import layer_scaling  # pylint: disable=import-outside-toplevel
  rows = layer_scaling.run(quick=True, cells=[(4, 3)])
  assert [row["variant"] for row in rows] == ["gconv_gather", "exact_dense", "weight_sharing",
                                              "kronecker", "tied_cayley"]
  assert all(row["ms"] > 0 and row["peak_MiB"] > 0 for row in rows)


def test_isometries_constraint_keeps_the_stack_on_grid_isometries():
  layer = WSLiftConv(1, 2, 5, constraint="isometries", rngs=nnx.Rngs(0))
  assert layer.logits[...].shape == (3, 8)
  layer.logits[...] = 4.0 * jax.random.normal(jax.random.key(1), (3, 8))
  stack = layer.representation_stack()
  np.testing.assert_allclose(np.asarray(stack).sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(stack).sum(-2), 1.0, atol=1e-5)
  assert float(structure.isometry_loss(stack)) < 1e-8
  one_hot = jnp.full((3, 8), -1e4).at[jnp.arange(3), jnp.array([1, 2, 3])].set(0.0)
  layer.logits[...] = one_hot
  np.testing.assert_allclose(layer.representation_stack(),
                             groups.spatial_permutations("C4", 5), atol=1e-6)
  with pytest.raises(ValueError, match="2-D kernel grid"):
    WSLiftConv(1, 2, 3, constraint="isometries", spatial_dims=1, rngs=nnx.Rngs(0))


def test_powers_of_a_generator_are_cyclic_and_doubly_stochastic():
  layer = WSLiftConv(1, 2, 5, elements="powers", rngs=nnx.Rngs(0))
  assert layer.logits[...].shape == (1, 25, 25)  # one learned generator, not G − 1 elements
  stack = np.asarray(layer.representation_stack(), np.float64)
  generator = stack[1]
  np.testing.assert_allclose(stack[0], np.eye(25), atol=0)
  for power in (2, 3):  # numpy re-derivation: element g is B^g
    np.testing.assert_allclose(stack[power], np.linalg.matrix_power(generator, power),
                               rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stack.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(stack.sum(-2), 1.0, atol=1e-5)


@pytest.mark.parametrize("generator, expected", [(1, [0, 1, 2, 3]), (3, [0, 3, 2, 1]),
                                                 (2, [0, 2, 0, 2]), (4, [0, 4, 0, 4])])
def test_powers_of_an_isometry_generator(generator, expected):
  """D4 indices: 0 = e, 1..3 = rotations by 90°·r, 4 = a flip. A 90° rotation generates C4
  (in either direction); a 180° rotation or a flip only a repeated C2."""
  layer = WSLiftConv(1, 2, 5, elements="powers", constraint="isometries", rngs=nnx.Rngs(0))
  assert layer.logits[...].shape == (1, 8)
  layer.logits[...] = jnp.full((1, 8), -1e4).at[0, generator].set(0.0)
  d4 = np.asarray(groups.spatial_permutations("D4", 5))
  np.testing.assert_allclose(layer.representation_stack(), d4[expected], atol=1e-6)


# powers: generator 3 of the 8 isometries (270°); power_blend: candidate 1 of 7 (90°). The
# tied_cyclic invariance test covers power_blend in the CI set.
@pytest.mark.parametrize("elements, size, rotation", [
    ("powers", 8, 3), pytest.param("power_blend", 7, 1, marks=pytest.mark.slow)])
def test_tied_cayley_network_from_a_rotation_generator_is_rotation_invariant(elements, size,
                                                                             rotation):
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=3, num_blocks=3,
                       factorise="kronecker", tie="cayley", elements=elements,
                       constraint="isometries")
  lift = weight_sharing_layers(model)[0][1]
  lift.logits[...] = jnp.full((1, size), -1e4).at[0, rotation].set(0.0)
  _assert_invariant_to_quarter_turns(model, jax.random.normal(jax.random.key(4), (2, 28, 28, 1)))


def _assert_invariant_to_quarter_turns(model, x):
  y = model(x)
  for turns in (1, 2, 3):
    np.testing.assert_allclose(model(jnp.rot90(x, turns, axes=(1, 2))), y, rtol=1e-4,
                               atol=1e-5 * float(jnp.abs(y).max()))


def _power_blend_layer(logits=None):
  layer = WSLiftConv(1, 2, 5, elements="power_blend", constraint="isometries",
                     logits_init="zeros", rngs=nnx.Rngs(0))
  if logits is not None:
    layer.logits[...] = logits
  return layer


def test_distinct_cyclic_generators():
  """D4 order: e, r, r², r³, then the 4 flips. For 4 powers the 270° rotation generates the
  same stack as the 90° one; for 2 powers every isometry gives its own {I, P}."""
  assert structure.distinct_cyclic_generators(5, 4) == (0, 1, 2, 4, 5, 6, 7)
  assert structure.distinct_cyclic_generators(5, 2) == tuple(range(8))
  assert structure.distinct_cyclic_generators(5, 1) == (0,)


def test_power_blend_is_the_blend_of_the_isometries_powers():
  logits = jax.random.normal(jax.random.key(3), (1, 7))
  layer = _power_blend_layer(logits)
  assert layer.logits[...].shape == (1, 7)
  weights = np.exp(np.asarray(logits[0], np.float64))
  weights /= weights.sum()
  d4 = np.asarray(groups.spatial_permutations("D4", 5), np.float64)[[0, 1, 2, 4, 5, 6, 7]]
  stack = np.asarray(layer.representation_stack(), np.float64)
  for power in range(4):  # numpy re-derivation: element m is Σ_j w_j P_j^m
    expected = sum(w * np.linalg.matrix_power(p, power) for w, p in zip(weights, d4))
    np.testing.assert_allclose(stack[power], expected, atol=1e-6)
  np.testing.assert_allclose(stack.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(stack.sum(-2), 1.0, atol=1e-5)


def test_power_blend_regularizers_see_the_generator():
  layer = _power_blend_layer(jax.random.normal(jax.random.key(7), (1, 7)))
  terms = layer.regularizers()
  assert float(terms["entropy"]) > 0 and float(terms["norm"]) == 0.0
  assert float(terms["isometry"]) < 1e-6  # blends of isometries: the prior is satisfied
  assert float(layer.marginal_error()) < 1e-5


@pytest.mark.parametrize("candidate", range(7))
def test_power_blend_at_a_vertex_equals_powers(candidate):
  blend = _power_blend_layer(jnp.full((1, 7), -1e4).at[0, candidate].set(0.0))
  powers = WSLiftConv(1, 2, 5, elements="powers", constraint="isometries", rngs=nnx.Rngs(0))
  generator = blend.generator_candidates[candidate]
  powers.logits[...] = jnp.full((1, 8), -1e4).at[0, generator].set(0.0)
  np.testing.assert_allclose(blend.representation_stack(), powers.representation_stack(),
                             atol=1e-6)


def test_only_power_blend_moves_the_higher_powers_at_the_centre():
  """At the centre start ``"powers"`` has B = Π with PΠ = ΠP = Π for every isometry P, so
  B² and B³ have zero derivative in the generator's weights (the group each generator would
  make is invisible to first order); ``"power_blend"`` moves every power."""
  def stack_of(elements):
    layer = WSLiftConv(1, 2, 5, elements=elements, constraint="isometries",
                       logits_init="zeros", rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(layer)
    def stack(logits):
      copy = nnx.merge(graphdef, jax.tree.map(jnp.asarray, state))
      copy.logits[...] = logits
      return copy.representation_stack()
    return stack
  powers_jacobian = jax.jacfwd(stack_of("powers"))(jnp.zeros((1, 8)))  # [G, d, d, 1, 8]
  blend_jacobian = jax.jacfwd(stack_of("power_blend"))(jnp.zeros((1, 7)))
  assert float(jnp.abs(powers_jacobian[1]).max()) > 0.05
  assert float(jnp.abs(powers_jacobian[2:]).max()) < 1e-6
  assert float(jnp.abs(blend_jacobian[2:]).max()) > 0.05
  # The rotation by 90° and a flip (candidates 1 and 3) pull element 2 towards different
  # matrices (r² vs e).
  rotation, flip = blend_jacobian[2, :, :, 0, 1], blend_jacobian[2, :, :, 0, 3]
  assert float(jnp.abs(rotation - flip).max()) > 0.05


@pytest.mark.parametrize("generator", range(8))
def test_cyclic_shifts_are_the_composition_law_of_any_isometry_powers(generator):
  """Every isometry P has order 1, 2 or 4, so its powers [I, P, P², P³] compose as the
  exponents do: the soft Cayley factors of the stack (where they are defined, i.e. for the
  rotations by ±90°, whose powers are distinct) equal the cyclic shifts, and every product
  P^m P^q is P^{(m+q) mod 4}."""
  shifts = np.asarray(structure.cyclic_shifts(4))
  d4 = np.asarray(groups.spatial_permutations("D4", 5), np.float64)
  stack = np.stack([np.linalg.matrix_power(d4[generator], m) for m in range(4)])
  for m, q in itertools.product(range(4), repeat=2):
    h = int(np.argmax(shifts[m, :, q]))
    np.testing.assert_array_equal(stack[m] @ stack[q], stack[h])
  np.testing.assert_array_equal(shifts.sum(1), 1.0)
  np.testing.assert_array_equal(shifts.sum(2), 1.0)
  if generator in (1, 3):
    np.testing.assert_allclose(structure.soft_cayley_factors(jnp.asarray(stack, jnp.float32)),
                               shifts, atol=1e-5)


@pytest.mark.parametrize("elements", ["powers", "power_blend"])
def test_tied_cyclic_network_from_a_rotation_generator_is_rotation_invariant(elements):
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=3, num_blocks=3,
                       factorise="kronecker", tie="cyclic", elements=elements,
                       constraint="isometries")
  lift = weight_sharing_layers(model)[0][1]
  size = lift.logits[...].shape[-1]
  rotation, flip = (1, 3) if elements == "power_blend" else (3, 4)  # 90° (or 270°), a flip
  lift.logits[...] = jnp.full((1, size), -1e4).at[0, rotation].set(0.0)
  x = jax.random.normal(jax.random.key(6), (2, 28, 28, 1))
  _assert_invariant_to_quarter_turns(model, x)
  lift.logits[...] = jnp.full((1, size), -1e4).at[0, flip].set(0.0)  # not rotation-invariant
  assert float(jnp.abs(model(jnp.rot90(x, 1, axes=(1, 2))) - model(x)).max()) > 1e-3


def test_powers_option_is_checked():
  with pytest.raises(ValueError, match="elements must be one of"):
    WSLiftConv(1, 2, 5, elements="generators", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="fix_identity=True"):
    WSLiftConv(1, 2, 5, elements="powers", fix_identity=False, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="needs constraint='isometries'"):
    WSLiftConv(1, 2, 5, elements="power_blend", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="fix_identity=True"):
    WSLiftConv(1, 2, 5, elements="power_blend", constraint="isometries", fix_identity=False,
               rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="tie='cyclic' needs a lifting layer whose"):
    create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=3, num_blocks=3,
                 factorise="kronecker", tie="cyclic")
  with pytest.raises(ValueError, match="order must be a positive int"):
    structure.cyclic_shifts(0)
  with pytest.raises(ValueError, match="num_powers must be a positive int"):
    structure.isometry_powers(5, 0)
  with pytest.raises(ValueError, match="do not apply to the exact model"):
    create_model("gcnn", num_classes=10, rngs=nnx.Rngs(0), elements="powers")
