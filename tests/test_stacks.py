"""Stack parameterisations (``ds_symmetry.nn.stacks``) and their pure helpers
(``ds_symmetry.ops.stacks``), each checked on its own, without a layer, against numpy
re-derivations and exact groups."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ds_symmetry.nn import stacks
from ds_symmetry.nn.weight_sharing import WSGroupConv, WSLiftConv
from ds_symmetry.ops import groups
from ds_symmetry.ops import stacks as stack_ops
from ds_symmetry.ops import structure
from ds_symmetry.ops.sinkhorn import sinkhorn

KEY = jax.random.key(0)


def _log(matrices):
  """Logits whose Sinkhorn output is exactly the 0/1 ``matrices`` (log 0 = -inf)."""
  return stacks.RepresentationLogits(jnp.log(jnp.asarray(matrices, jnp.float32)))


# -- ops.stacks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", stack_ops.LOGITS_INITS)
def test_every_logits_init_has_the_shape_and_dtype_asked_for(mode):
  logits = stack_ops.init_logits(KEY, (3, 4, 4), mode, identity_scale=5.0)
  assert logits.shape == (3, 4, 4) and logits.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(logits)))


def test_balanced_uniform_logits_give_uniform_s_sinkhorn_output_with_zero_log_marginals():
  uniform = stack_ops.init_logits(KEY, (2, 5, 5), "uniform", 5.0)
  balanced = stack_ops.init_logits(KEY, (2, 5, 5), "balanced_uniform", 5.0)
  np.testing.assert_allclose(sinkhorn(balanced, num_iters=20), sinkhorn(uniform, num_iters=20),
                             atol=1e-5)
  np.testing.assert_allclose(jax.scipy.special.logsumexp(balanced, axis=-1), 0.0, atol=1e-4)


def test_unknown_logits_init_is_named():
  with pytest.raises(ValueError, match="logits_init must be one of"):
    stack_ops.init_logits(KEY, (1, 2, 2), "eye", 5.0)


def test_with_identity_prepends_the_identity_only_when_fixed():
  learned = jnp.full((2, 3, 3), 1.0 / 3)
  stack = stack_ops.with_identity(learned, 3, fix_identity=True)
  assert stack.shape == (3, 3, 3)
  np.testing.assert_array_equal(stack[0], np.eye(3))
  np.testing.assert_array_equal(stack_ops.with_identity(learned, 3, fix_identity=False), learned)
  np.testing.assert_array_equal(stack_ops.with_identity(None, 3, fix_identity=True),
                                np.eye(3)[None])


def test_isometry_blend_at_a_vertex_is_that_isometry_and_is_doubly_stochastic_inside():
  d4 = np.asarray(groups.spatial_permutations("D4", 3))
  one_hot = jnp.full((8, 8), -1e4).at[jnp.arange(8), jnp.arange(8)].set(0.0)
  np.testing.assert_allclose(stack_ops.isometry_blend(one_hot, 3, tau=1.0), d4, atol=1e-6)
  blends = np.asarray(stack_ops.isometry_blend(jax.random.normal(KEY, (4, 8)), 3, tau=0.5))
  np.testing.assert_allclose(blends.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(blends.sum(-2), 1.0, atol=1e-5)


def test_generator_powers_are_matrix_powers():
  generator = sinkhorn(jax.random.normal(KEY, (1, 4, 4)), num_iters=50)
  powers = np.asarray(stack_ops.generator_powers(generator, 3), np.float64)
  for m in range(3):
    np.testing.assert_allclose(powers[m], np.linalg.matrix_power(np.asarray(generator[0]), m + 1),
                               rtol=1e-5, atol=1e-6)


def test_power_blend_is_the_weighted_sum_of_the_candidates_powers():
  candidates = structure.distinct_cyclic_generators(3, 4)
  weights = jax.random.normal(KEY, (len(candidates),))
  got = np.asarray(stack_ops.power_blend(weights, 3, 4, candidates, tau=1.0), np.float64)
  w = np.exp(np.asarray(weights, np.float64))
  w /= w.sum()
  d4 = np.asarray(groups.spatial_permutations("D4", 3), np.float64)[list(candidates)]
  for m in range(1, 4):
    expected = sum(wj * np.linalg.matrix_power(p, m) for wj, p in zip(w, d4))
    np.testing.assert_allclose(got[m - 1], expected, atol=1e-6)


def test_kronecker_stack_is_the_kronecker_product_of_each_element():
  a = sinkhorn(jax.random.normal(KEY, (3, 3, 3)), num_iters=50)
  b = sinkhorn(jax.random.normal(jax.random.key(1), (3, 4, 4)), num_iters=50)
  expected = np.stack([np.kron(np.asarray(a[g]), np.asarray(b[g])) for g in range(3)])
  np.testing.assert_allclose(stack_ops.kronecker_stack(a, b), expected, atol=1e-6)


# -- LearnedMatrices ----------------------------------------------------------------------------

@pytest.mark.parametrize("constraint", stacks.CONSTRAINTS)
def test_learned_matrices_shapes_and_marginals_for_every_constraint(constraint):
  matrices = stacks.LearnedMatrices(constraint=constraint, kernel_size=3)
  spatial = matrices.create(KEY, 3, 9, spatial=True)
  plain = matrices.create(KEY, 3, 4)
  assert isinstance(spatial, stacks.RepresentationLogits)
  assert spatial.shape == ((3, 8) if constraint == "isometries" else (3, 9, 9))
  assert plain.shape == (3, 4, 4)
  assert matrices.create(KEY, 0, 4) is None
  for free, size in ((spatial, 9), (plain, 4)):
    learned = np.asarray(matrices.constrain(free[...]))
    assert learned.shape == (3, size, size)
    np.testing.assert_allclose(learned.sum(-1), 1.0, atol=1e-4)  # every constraint starts there
  assert matrices.has_norm(plain[...]) == (constraint in ("sinkhorn", "isometries"))
  assert not matrices.has_norm(jnp.zeros((3, 8)))


def test_learned_matrices_are_static_values():
  """A parameterisation is static data of its layer: equal settings, equal and hashable."""
  a = stacks.IndependentElements(stacks.LearnedMatrices(kernel_size=3), 4, 9, spatial=True)
  b = stacks.IndependentElements(stacks.LearnedMatrices(kernel_size=3), 4, 9, spatial=True)
  assert a == b and hash(a) == hash(b)
  assert a != stacks.IndependentElements(stacks.LearnedMatrices(kernel_size=3,
                                                                constraint="softmax"), 4, 9,
                                         spatial=True)


# -- each parameterisation ----------------------------------------------------------------------

def test_independent_elements_stack_regularisers_and_marginal_error():
  matrices = stacks.LearnedMatrices(kernel_size=3)
  lift = stacks.IndependentElements(matrices, 4, 9, spatial=True)
  variables = lift.create(KEY)
  assert set(variables) == set(lift.variable_names) == {"logits"}
  assert variables["logits"].shape == (3, 9, 9)
  stack = lift.stack(variables)
  assert stack.shape == (4, 9, 9)
  np.testing.assert_array_equal(stack[0], np.eye(9))
  terms = lift.regularizers(variables)
  assert set(terms) == {"norm", "entropy", "isometry"}
  assert all(float(value) > 0 for value in terms.values())
  assert float(lift.marginal_error(variables)) < 1e-3
  full = stacks.IndependentElements(matrices, 4, 36)  # a group convolution's: no spatial prior
  assert float(full.regularizers(full.create(KEY))["isometry"]) == 0.0


def test_independent_elements_with_exact_logits_are_the_exact_group():
  lift = stacks.IndependentElements(stacks.LearnedMatrices(kernel_size=3), 4, 9, spatial=True)
  exact = groups.spatial_permutations("C4", 3)
  np.testing.assert_allclose(lift.stack({"logits": _log(exact[1:])}), exact, atol=1e-6)


def test_no_learned_element_is_no_parameter_and_no_regulariser():
  single = stacks.IndependentElements(stacks.LearnedMatrices(kernel_size=3), 1, 9, spatial=True)
  variables = single.create(KEY)
  assert variables == {"logits": None}
  np.testing.assert_array_equal(single.stack(variables), np.eye(9)[None])
  assert all(float(v) == 0.0 for v in single.regularizers(variables).values())
  assert float(single.marginal_error(variables)) == 0.0


def test_generator_powers_stack_is_the_powers_of_one_generator():
  powers = stacks.GeneratorPowers(stacks.LearnedMatrices(kernel_size=3), 4, 9)
  variables = powers.create(KEY)
  assert variables["logits"].shape == (1, 9, 9)
  stack = np.asarray(powers.stack(variables), np.float64)
  for m in range(4):
    np.testing.assert_allclose(stack[m], np.linalg.matrix_power(stack[1], m), rtol=1e-5,
                               atol=1e-6)
  assert powers.powers_of_one_generator
  assert len(powers.owned_matrices(variables)) == 1


def test_power_blend_at_a_vertex_is_the_powers_of_that_isometry():
  blend = stacks.PowerBlend(stacks.LearnedMatrices(constraint="isometries", kernel_size=5), 4, 5)
  assert blend.create(KEY)["logits"].shape == (1, len(blend.candidates))
  rotation = blend.candidates.index(1)  # the 90° rotation
  logits = stacks.RepresentationLogits(jnp.full((1, 7), -1e4).at[0, rotation].set(0.0))
  np.testing.assert_allclose(blend.stack({"logits": logits}),
                             groups.spatial_permutations("C4", 5), atol=1e-6)
  terms = blend.regularizers({"logits": logits})
  assert float(terms["norm"]) == 0.0 and float(terms["isometry"]) < 1e-6


@pytest.mark.parametrize("group_name", ["C4", "D4"])
def test_kronecker_factors_with_exact_factors_are_the_shift_twist_stack(group_name):
  order, k = groups.group_order(group_name), 3
  kron = stacks.KroneckerFactors(stacks.LearnedMatrices(kernel_size=k), order, k)
  created = kron.create(KEY)
  assert created["group_logits"].shape == (order - 1, order, order)
  assert created["spatial_logits"].shape == (order - 1, k * k, k * k)
  variables = {"group_logits": _log(groups.regular_permutations(group_name)[1:]),
               "spatial_logits": _log(groups.spatial_permutations(group_name, k)[1:])}
  np.testing.assert_allclose(kron.stack(variables),
                             groups.shift_twist_permutations(group_name, k), atol=1e-6)
  assert kron.factorised and kron.size == order * k * k
  assert len(kron.owned_matrices(created)) == 2


def _source(stack, kernel_size=3, fix_identity=True, powers=False, kind="lift", learned=True):
  """A stand-in for a learned lifting layer: what a tied stack reads from ``spatial_source``."""
  return types.SimpleNamespace(
      kind=kind, is_learned=learned, kernel_size=kernel_size, num_elements=stack.shape[0],
      fix_identity=fix_identity, representation_stack=lambda: stack,
      elements="powers" if powers else "independent",
      parameterisation=types.SimpleNamespace(powers_of_one_generator=powers))


def test_tied_factors_read_the_lifting_stack_and_own_their_group_factor_unless_shared():
  matrices = stacks.LearnedMatrices(kernel_size=3)
  spatial = groups.spatial_permutations("C4", 3)
  tied = stacks.TiedFactors(matrices, 4, 3)
  variables = tied.create(KEY, spatial_source=_source(spatial))
  assert variables["group_logits"].shape == (3, 4, 4)
  group, got_spatial = tied.factors(variables)
  assert group.shape == (4, 4, 4)
  np.testing.assert_array_equal(got_spatial, spatial)
  assert len(tied.owned_matrices(variables)) == 1
  shared = stacks.TiedFactors(matrices, 4, 3, shared=True)
  shared_variables = shared.create(KEY, spatial_source=_source(spatial),
                                   group_logits_source=variables["group_logits"])
  assert shared_variables["group_logits"] is variables["group_logits"]
  assert shared.owned_matrices(shared_variables) == []  # the owner counts it
  assert float(shared.regularizers(shared_variables)["norm"]) == 0.0
  with pytest.raises(ValueError, match="needs group_logits_source"):
    shared.create(KEY, spatial_source=_source(spatial))


def test_tied_cayley_and_cyclic_factors_of_an_exact_rotation_stack_are_the_shift_twist_stack():
  spatial = groups.spatial_permutations("C4", 3)
  expected = groups.shift_twist_permutations("C4", 3)
  matrices = stacks.LearnedMatrices(kernel_size=3)
  for tied in (stacks.TiedCayleyFactors(matrices, 4, 3),
               stacks.TiedCyclicFactors(matrices, 4, 3)):
    variables = tied.create(KEY, spatial_source=_source(spatial, powers=True))
    assert set(variables) == {"spatial_source"}
    np.testing.assert_allclose(tied.stack(variables), expected, atol=1e-5)
    assert all(float(v) == 0.0 for v in tied.regularizers(variables).values())


@pytest.mark.parametrize("source, message", [
    (None, "needs spatial_source, a learned WSLiftConv"),
    (_source(groups.spatial_permutations("C4", 3), learned=False), "a learned WSLiftConv"),
    (_source(groups.spatial_permutations("C4", 3), kind="group"), "a learned WSLiftConv"),
    (_source(groups.spatial_permutations("C4", 5), kernel_size=5), "kernel_size=3"),
    (_source(groups.spatial_permutations("C4", 3), fix_identity=False), "fix_identity=True"),
])
def test_tied_factors_check_their_source(source, message):
  with pytest.raises(ValueError, match=message):
    stacks.TiedCayleyFactors(stacks.LearnedMatrices(kernel_size=3), 4, 3).create(
        KEY, spatial_source=source)


def test_tied_cyclic_factors_need_a_stack_of_powers():
  with pytest.raises(ValueError, match="powers of one generator"):
    stacks.TiedCyclicFactors(stacks.LearnedMatrices(kernel_size=3), 4, 3).create(
        KEY, spatial_source=_source(groups.spatial_permutations("C4", 3)))


@pytest.mark.parametrize("acts_on_elements", [False, True])
def test_exact_group_is_the_groups_permutations_and_learns_nothing(acts_on_elements):
  exact = stacks.ExactGroup("D4", 3, acts_on_elements=acts_on_elements)
  expected = (groups.shift_twist_permutations("D4", 3) if acts_on_elements
              else groups.spatial_permutations("D4", 3))
  assert exact.create(KEY) == {} and not exact.learned
  np.testing.assert_array_equal(exact.stack({}), expected)
  assert exact.size == expected.shape[-1] and exact.num_elements == 8
  assert all(float(v) == 0.0 for v in exact.regularizers({}).values())


def test_exact_group_that_does_not_act_on_the_grid_is_refused_when_built():
  with pytest.raises(ValueError, match="shift8"):
    stacks.ExactGroup("shift8", 3)


def test_frozen_stack_holds_its_stack_as_a_non_parameter():
  stack = groups.spatial_permutations("C4", 3)
  frozen = stacks.FrozenStack(4, 9)
  variables = frozen.create(stack=stack)
  assert isinstance(variables["fixed_stack"], stacks.FixedStack)
  assert not isinstance(variables["fixed_stack"], nnx.Param)
  np.testing.assert_array_equal(frozen.stack(variables), stack)
  assert not frozen.learned
  with pytest.raises(ValueError, match=r"stack must have shape \(4, 9, 9\)"):
    frozen.create(stack=np.zeros((4, 8, 8)))


# -- options and layers -------------------------------------------------------------------------

def test_options_name_one_parameterisation_each():
  matrices = stacks.LearnedMatrices(constraint="isometries", kernel_size=3)
  lift = {e: type(stacks.lift_stack(e, matrices, 4, 3, 2)) for e in stacks.ELEMENTS}
  assert lift == {"independent": stacks.IndependentElements,
                  "powers": stacks.GeneratorPowers, "power_blend": stacks.PowerBlend}
  group = {s: stacks.group_stack(*pair, matrices, 4, 3, 2, 0.05)
           for s, pair in stacks.STRUCTURES.items()}
  assert {s: type(p) for s, p in group.items()} == {
      "full": stacks.IndependentElements, "kronecker": stacks.KroneckerFactors,
      "tied": stacks.TiedFactors, "tied_shared": stacks.TiedFactors,
      "tied_cayley": stacks.TiedCayleyFactors, "tied_cyclic": stacks.TiedCyclicFactors}
  assert group["tied_shared"].shared and not group["tied"].shared
  with pytest.raises(ValueError, match="needs a 2-D kernel grid"):
    stacks.group_stack("kronecker", "none", matrices, 4, 3, 3, 0.05)


def test_every_old_sharing_name_is_one_valid_factorise_tie_pair_and_recorded_names_translate():
  from ds_symmetry import run_files
  assert sorted(stacks.STRUCTURES) == sorted(stacks.SHARINGS)
  assert len(set(stacks.STRUCTURES.values())) == len(stacks.SHARINGS)
  for factorise, tie in stacks.STRUCTURES.values():
    stacks.check_structure(factorise, tie)
  # config.json files recorded with model_options.sharing read back as the same pair
  assert run_files.LEGACY_SHARING == stacks.STRUCTURES


def test_layer_networks_and_create_model_refuse_sharing_in_one_line_naming_the_pair():
  """The layer, the networks and create_model take factorise / tie; the old single name is
  refused with the pair to pass instead (an unknown old name: the options to choose from)."""
  from ds_symmetry.models import create_model
  from ds_symmetry.models.networks import ConvNet
  builders = {
      "WSGroupConv": lambda value: WSGroupConv(2, 2, 3, sharing=value, rngs=nnx.Rngs(0)),
      "ConvNet": lambda value: ConvNet("learned", num_classes=10, channels=2,
                                       ws_options={"sharing": value}, rngs=nnx.Rngs(0)),
      "create_model": lambda value: create_model("wscnn", num_classes=10, sharing=value,
                                                 rngs=nnx.Rngs(0)),
  }
  for name, build in builders.items():
    with pytest.raises(ValueError) as info:
      build("tied_cayley")
    message = str(info.value)
    assert "\n" not in message, name
    assert "factorise='kronecker', tie='cayley'" in message, (name, message)
    with pytest.raises(ValueError, match=r"factorise \(one of .*\) and tie \(one of"):
      build("tied_spatial")


def test_option_checks_name_the_argument():
  with pytest.raises(ValueError, match="elements must be one of"):
    stacks.check_lift_options("generators", True, "sinkhorn")
  with pytest.raises(ValueError, match="needs fix_identity=True"):
    stacks.check_lift_options("powers", False, "sinkhorn")
  with pytest.raises(ValueError, match="needs constraint='isometries'"):
    stacks.check_lift_options("power_blend", True, "sinkhorn")
  with pytest.raises(ValueError, match="factorise must be one of"):
    stacks.check_group_options("shared", "none", 0.05)
  with pytest.raises(ValueError, match="cayley_temperature must be > 0"):
    stacks.check_group_options("none", "none", 0.0)
  with pytest.raises(ValueError, match="factorise must be one of"):
    stacks.check_structure("tied", "none")
  with pytest.raises(ValueError, match="tie must be one of"):
    stacks.check_structure("kronecker", "tied_cayley")
  with pytest.raises(ValueError, match="tie='cayley' .* needs factorise='kronecker'"):
    stacks.check_group_options("none", "cayley", 0.05)


def test_learned_exact_and_frozen_layers_share_one_code_path():
  """The layer holds one parameterisation; exact and frozen stacks are parameterisations too,
  and a frozen learned layer computes what the exact layer computes."""
  exact = WSLiftConv(1, 2, 3, group="C4", rngs=nnx.Rngs(0))
  learned = WSLiftConv(1, 2, 3, rngs=nnx.Rngs(0))
  assert isinstance(exact.parameterisation, stacks.ExactGroup)
  assert isinstance(learned.parameterisation, stacks.IndependentElements)
  learned.weight[...] = exact.weight[...]
  learned.freeze_stack(groups.spatial_permutations("C4", 3))
  assert isinstance(learned.parameterisation, stacks.FrozenStack) and learned.logits is None
  x = jax.random.normal(KEY, (2, 7, 7, 1))
  np.testing.assert_array_equal(learned(x), exact(x))
  group = WSGroupConv(2, 2, 3, factorise="kronecker", rngs=nnx.Rngs(0))
  assert isinstance(group.parameterisation, stacks.KroneckerFactors)
  assert {"group_logits", "spatial_logits"} <= {
      str(path[0]) for path, _ in nnx.to_flat_state(nnx.state(group))}
