"""Every subgroup of D4: registry entries, exact G-CNNs, and rounding that can name each one."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ds_symmetry import ops
from ds_symmetry.discovery import committed_group, discover_gcnn, discover_group
from ds_symmetry.models import create_model
from ds_symmetry.nn import weight_sharing_layers


def _closed_subsets_of_d4():
  """Every subset of D4 that contains the identity and is closed under D4's product, found
  by brute force over all 2^7 subsets (independent of the registry)."""
  table = ops.cayley_table("D4")
  found = []
  for mask in range(2 ** 7):
    subset = {0} | {g + 1 for g in range(7) if mask >> g & 1}
    if all(table[a, b] in subset for a in subset for b in subset):
      found.append(frozenset(subset))
  return found


def test_the_registry_holds_exactly_the_ten_subgroups_of_d4():
  registered = [frozenset(ops.d4_elements(name)) for name in ops.D4_SUBGROUPS]
  assert len(set(registered)) == 10
  assert set(registered) == set(_closed_subsets_of_d4())
  assert [ops.group_order(name) for name in ops.D4_SUBGROUPS] == [1, 2, 2, 2, 2, 2, 4, 4, 4, 8]


@pytest.mark.parametrize("name", ops.D4_SUBGROUPS)
def test_every_subgroup_acts_as_its_d4_elements(name):
  kernel = np.arange(25.0).reshape(5, 5)
  for index, element in enumerate(ops.d4_elements(name)):
    np.testing.assert_array_equal(ops.apply_element(name, index, kernel),
                                  ops.apply_element("D4", element, kernel))


def test_d4_elements_refuses_a_group_that_is_not_a_subgroup_of_d4():
  with pytest.raises(ValueError, match="'C8' is not a subgroup of D4"):
    ops.d4_elements("C8")


@pytest.mark.parametrize("name", ops.D4_SUBGROUPS)
def test_every_subgroup_gcnn_is_invariant_to_its_elements_and_no_other(name):
  model = create_model("gcnn", num_classes=10, rngs=nnx.Rngs(0), channels=3, num_blocks=2,
                       group=name)
  x = jax.random.normal(jax.random.key(1), (2, 28, 28, 1))
  moved = jnp.concatenate([ops.apply_element("D4", g, x, axes=(1, 2)) for g in range(8)])
  outputs = model(moved).reshape(8, 2, -1)  # one forward pass for the 8 isometries
  reference = outputs[0]
  own = set(ops.d4_elements(name))
  scale = float(jnp.max(jnp.abs(reference)))
  for g in range(8):
    error = float(jnp.max(jnp.abs(outputs[g] - reference))) / scale
    if g in own:
      assert error <= 1e-5, (name, g, error)
    else:
      assert error > 1e-3, (name, g, error)


def _blurred(stack, keep, seed=0):
  """``keep·P + (1 − keep)·M`` with ``M`` a random doubly stochastic matrix per slot."""
  rng = np.random.default_rng(seed)
  d = stack.shape[-1]
  noise = []
  for _ in range(len(stack)):
    m = rng.random((d, d)) + 0.1
    for _ in range(200):
      m /= m.sum(1, keepdims=True)
      m /= m.sum(0, keepdims=True)
    noise.append(m)
  return keep * stack + (1 - keep) * np.stack(noise)


def _planted(name, slots=8, kernel_size=3):
  """``slots`` slots cycling through the subgroup's elements (in D4's permutations)."""
  d4 = np.asarray(ops.spatial_permutations("D4", kernel_size), np.float64)
  elements = ops.d4_elements(name)
  return d4[[elements[i % len(elements)] for i in range(slots)]]


@pytest.mark.parametrize("name", ops.D4_SUBGROUPS)
def test_a_noisy_planted_stack_of_every_subgroup_commits_to_it(name):
  stack = _blurred(_planted(name), keep=0.9, seed=ops.D4_SUBGROUPS.index(name))
  found = committed_group(stack, 3, within=0.2)
  assert found is not None
  assert found.group == name and found.order == ops.group_order(name)
  assert found.distinct == (ops.group_order(name) == 8)


@pytest.mark.parametrize("name", ops.D4_SUBGROUPS)
def test_a_blurred_or_half_committed_stack_is_not_rounded(name):
  planted = _planted(name)
  assert committed_group(_blurred(planted, keep=0.5), 3, within=0.2) is None
  half = planted.copy()
  half[4:] = _blurred(planted[4:], keep=0.0)  # half the slots at random doubly stochastic
  assert committed_group(half, 3, within=0.2) is None


def test_sharp_elements_that_do_not_close_are_not_a_group():
  d4 = np.asarray(ops.spatial_permutations("D4", 3), np.float64)
  for subset in ([0, 1], [0, 4, 1], [0, 1, 2]):  # {e, r}, {e, m, r}, {e, r, r²}
    found = discover_group(d4[subset], 3)
    assert not found.closed and found.group is None
    assert committed_group(d4[subset], 3, within=0.5) is None


def test_a_collapsed_answer_is_rebuilt_as_the_exact_gcnn_of_its_order():
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=2, kernel_size=3,
                       num_blocks=2, num_elements=4)
  lift = weight_sharing_layers(model)[0][1]
  d4 = np.asarray(ops.spatial_permutations("D4", 3), np.float64)
  planted = d4[[0, 2, 0, 2]]  # e, r², e, r²: the 180° rotation in four slots
  lift.logits[...] = jnp.asarray(np.log(planted[1:] * 0.999 + 1e-3 / 9), jnp.float32)
  with pytest.raises(ValueError, match="2 distinct elements in 4 slots"):
    discover_gcnn(model)
  built = []

  def build(group):
    built.append(group)
    return create_model("gcnn", num_classes=10, rngs=nnx.Rngs(0), channels=2, kernel_size=3,
                        num_blocks=2, group=group)
  found = discover_gcnn(model, build=build)
  assert built == ["C2"] and found.rebuilt and found.discovery.order == 2
  exact = weight_sharing_layers(found.model)[0][1]
  assert exact.num_elements == 2 and exact.group == "C2"
  record = found.record()
  assert record["group"] == "C2" and record["order"] == 2 and record["rebuilt"]


def test_every_pair_of_distinct_subgroups_differs_somewhere():
  for a, b in itertools.combinations(ops.D4_SUBGROUPS, 2):
    assert set(ops.d4_elements(a)) != set(ops.d4_elements(b))


def test_without_build_a_collapsed_answer_can_still_be_rounded_layer_by_layer():
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=2, kernel_size=3,
                       num_blocks=2, num_elements=4)
  lift = weight_sharing_layers(model)[0][1]
  d4 = np.asarray(ops.spatial_permutations("D4", 3), np.float64)
  lift.logits[...] = jnp.asarray(np.log(d4[[2, 0, 2]] * 0.999 + 1e-3 / 9), jnp.float32)
  found = discover_gcnn(model, require_group=False)
  assert not found.rebuilt and found.discovery.group == "C2" and not found.discovery.distinct
  for _, layer in weight_sharing_layers(found.model):
    stack = np.asarray(layer.representation_stack())
    np.testing.assert_array_equal(stack.sum(-1), 1.0)  # every layer a 0/1 permutation stack
    assert set(np.unique(stack).tolist()) <= {0.0, 1.0}
