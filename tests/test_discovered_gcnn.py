"""The discovered G-CNN and the relabelling-aware judgement of group layers."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ds_symmetry.analysis import distance_to_group, identify_group
from ds_symmetry.analysis.groups import group_labelling, relabelled_shift_twist
from ds_symmetry.discovery import (committed_group, discover_gcnn, discover_group,
                                   regular_group_stack)
from ds_symmetry.models import create_model
from ds_symmetry.nn import stacks, weight_sharing_layers
from ds_symmetry.ops import groups


def _structure(sharing: str) -> dict:
  """``create_model``'s ``factorise`` / ``tie`` of a group layer's ``sharing`` value."""
  factorise, tie = stacks.STRUCTURES[sharing]
  return {"factorise": factorise, "tie": tie}


def _relabelled_gcnn_stacks(order, kernel_size=5):
  """Spatial and group-layer stacks of an exact C4 G-CNN whose learned element ``i`` is
  rotation ``order[i]`` (built directly from rot90, independent of the analysis code)."""
  k = kernel_size
  n = len(order)
  indices = np.arange(k * k).reshape(k, k)
  spatial = []
  for turns in order:
    source = np.rot90(indices, turns).reshape(-1)
    matrix = np.zeros((k * k, k * k))
    matrix[np.arange(k * k), source] = 1.0
    spatial.append(matrix)
  position = {turns: i for i, turns in enumerate(order)}
  group = []
  for i, turns in enumerate(order):
    regular = np.zeros((n, n))
    for q, other in enumerate(order):
      regular[position[(turns + other) % 4], q] = 1.0  # rotations compose by adding turns
    group.append(np.kron(regular, spatial[i]))
  return np.stack(spatial), np.stack(group)


def test_a_relabelled_exact_group_layer_is_at_distance_zero_with_its_labelling():
  order = [0, 3, 2, 1]  # learned element i is the rotation by -i
  _, group = _relabelled_gcnn_stacks(order)
  result = distance_to_group(group, "C4", 5, kind="group")
  assert result.mean_distance < 1e-9 and result.covering_distance < 1e-9
  assert result.labelling.tolist() == order
  assert identify_group(group, 5, kind="group").name == "C4"


@pytest.mark.parametrize("order", [list(p) for p in itertools.permutations(range(4))])
def test_every_labelling_is_recovered(order):
  spatial, group = _relabelled_gcnn_stacks(order, kernel_size=3)
  assert group_labelling(group, "C4", 3).tolist() == order
  np.testing.assert_array_equal(relabelled_shift_twist("C4", 3, order)[order], group)


def test_a_wrongly_twisted_group_layer_is_not_c4():
  """Right spatial parts but an input-element axis that does not follow the group law."""
  order = [0, 1, 2, 3]
  spatial, _ = _relabelled_gcnn_stacks(order, kernel_size=3)
  wrong = np.stack([np.kron(np.eye(4), spatial[g]) for g in range(4)])  # no shift
  assert distance_to_group(wrong, "C4", 3, kind="group").covering_distance > 1.0


def test_relabelled_shift_twist_rejects_a_non_permutation():
  with pytest.raises(ValueError, match="labelling"):
    relabelled_shift_twist("C4", 3, [0, 0, 1, 2])


def _blurred(matrices, keep=0.7):
  d = matrices.shape[-1]
  return keep * matrices + (1.0 - keep) / d


def _set_stack(layer, stack):
  layer.logits[...] = jnp.log(jnp.asarray(stack[1:], jnp.float32))  # element 0 is fixed I


@pytest.mark.parametrize("sharing", [pytest.param("full", marks=pytest.mark.slow), "tied_cayley"])
def test_a_blurred_c4_model_becomes_exactly_invariant_after_discovery(sharing):
  order = [0, 2, 3, 1]
  spatial, group = _relabelled_gcnn_stacks(order)
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=3, num_blocks=3,
                       **_structure(sharing))
  for _, layer in weight_sharing_layers(model):
    if layer.kind == "lift":
      _set_stack(layer, _blurred(spatial))
    elif sharing == "full":
      _set_stack(layer, _blurred(group))
  x = jax.random.normal(jax.random.key(1), (3, 28, 28, 1))
  rotated = jnp.rot90(x, 1, axes=(1, 2))
  before = float(jnp.abs(model(rotated) - model(x)).max() / jnp.abs(model(x)).max())
  found = discover_gcnn(model)
  assert found.discovery.group == "C4" and found.discovery.labelling.tolist() == order
  y = found.model(x)
  for turns in (1, 2, 3):
    error = jnp.abs(found.model(jnp.rot90(x, turns, axes=(1, 2))) - y).max() / jnp.abs(y).max()
    assert float(error) < 1e-5 < before  # the blurred model was not invariant
  assert all(not layer.is_learned for _, layer in weight_sharing_layers(found.model))
  assert any(layer.is_learned for _, layer in weight_sharing_layers(model))  # not modified
  assert all(0.2 < d < 0.4 for d in found.layer_distances.values())


def test_a_sharp_power_blend_network_is_its_own_discovered_gcnn():
  """With a one-hot generator weight on the 90° rotation, the power_blend / tied_cyclic network
  already is a C4 G-CNN in the exponents' labelling: discovery must reproduce its outputs."""
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=3, num_blocks=3,
                       factorise="kronecker", tie="cyclic", elements="power_blend",
                       constraint="isometries")
  lift = weight_sharing_layers(model)[0][1]
  lift.logits[...] = jnp.full((1, 7), -1e4).at[0, 1].set(0.0)
  x = jax.random.normal(jax.random.key(2), (3, 28, 28, 1))
  found = discover_gcnn(model)
  assert found.discovery.group == "C4" and found.discovery.labelling.tolist() == [0, 1, 2, 3]
  np.testing.assert_allclose(found.model(x), model(x), rtol=1e-5, atol=1e-5)
  assert max(found.layer_distances.values()) < 1e-5


def test_a_stack_that_does_not_close_is_refused():
  k = 3
  rng = np.random.default_rng(0)
  scrambled = np.stack([np.eye(k * k)] + [np.eye(k * k)[rng.permutation(k * k)]
                                          for _ in range(3)])
  found = discover_group(scrambled, k)
  assert not found.closed and found.group is None
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=2, kernel_size=3,
                       num_blocks=2)
  _set_stack(weight_sharing_layers(model)[0][1], _blurred(scrambled, 0.9))
  with pytest.raises(ValueError, match="does not round to a group"):
    discover_gcnn(model)
  rounded = discover_gcnn(model, require_group=False)
  assert not rounded.discovery.is_group


def test_committed_group_waits_until_every_element_is_within_the_distance():
  """A blurred C4 commits once every element is within ``within`` of its permutation; sharp
  slots that repeat the elements of a smaller group commit to it; sharp elements that do not
  close never do."""
  spatial, _ = _relabelled_gcnn_stacks([0, 3, 2, 1], kernel_size=3)
  blurred = _blurred(spatial, 0.6)  # ‖R − P‖_F / √d = 0.4 · √(1 − 1/d) for every element
  expected = 0.4 * np.sqrt(1 - 1 / 9)
  found = committed_group(blurred, 3, within=expected + 1e-6)
  assert found is not None and found.group == "C4" and found.labelling.tolist() == [0, 3, 2, 1]
  np.testing.assert_allclose(found.projection_distances[1:], expected, rtol=1e-6)
  assert committed_group(blurred, 3, within=expected - 1e-3) is None
  half_turns = spatial[[0, 2, 0, 2]]  # e, r², e, r²: the slots collapse onto C2
  collapsed = committed_group(half_turns, 3, within=1e-6)
  assert collapsed.group == "C2" and collapsed.order == 2 and not collapsed.distinct
  quarter = spatial[[0, 1, 0, 1]]      # e, r, e, r: sharp, but {e, r} is not closed
  assert committed_group(quarter, 3, within=1.0) is None
  with pytest.raises(ValueError, match="within: 0"):
    committed_group(blurred, 3, within=0)


def test_regular_group_stack_of_the_canonical_order_is_the_shift_twist():
  spatial = np.asarray(groups.spatial_permutations("D4", 3))
  np.testing.assert_array_equal(regular_group_stack(spatial, groups.cayley_table("D4")),
                                groups.shift_twist_permutations("D4", 3))


def test_frozen_stacks_survive_split_and_merge():
  spatial, _ = _relabelled_gcnn_stacks([0, 1, 2, 3])
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=2, num_blocks=2,
                       factorise="kronecker", tie="cayley")
  _set_stack(weight_sharing_layers(model)[0][1], _blurred(spatial, 0.9))
  found = discover_gcnn(model).model
  graphdef, params, rest = nnx.split(found, nnx.Param, ...)
  assert not any("logits" in "/".join(map(str, path)) for path, _ in nnx.to_flat_state(params))
  again = nnx.merge(graphdef, params, rest)
  x = jax.random.normal(jax.random.key(2), (1, 28, 28, 1))
  np.testing.assert_array_equal(again(x), found(x))
