"""models.gcnn_from_cnn: the exact G-CNN of a subgroup of D4 started from a plain CNN's filters.

Checked against an independent computation (the CNN's own layers run on every transformed
copy, normalised jointly: ``jointly_normalised_average``), against the CNN itself for the
trivial group, and for exact invariance to its own group's elements and to no other."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ds_symmetry import ops
from ds_symmetry.models import create_model
from ds_symmetry.models.expansion import gcnn_from_cnn, jointly_normalised_average
from ds_symmetry.nn import GroupAveraged, weight_sharing_layers


def _cnn(seed=0):
  return create_model("cnn", num_classes=10, rngs=nnx.Rngs(seed), channels=4, num_blocks=2,
                      kernel_size=3)


def _images(seed=0, batch=3, size=9):
  return jax.random.uniform(jax.random.key(seed), (batch, size, size, 1))


def _relative(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize("group", ops.D4_SUBGROUPS)
def test_equals_the_cnn_run_on_every_copy_with_joint_normalisation(group):
  cnn, x = _cnn(), _images()
  gcnn = gcnn_from_cnn(cnn, group)
  assert {layer.group for _, layer in weight_sharing_layers(gcnn)} == {group}
  expected = jointly_normalised_average(cnn, x, ops.d4_elements(group))
  assert _relative(gcnn(x), expected) <= 1e-5


@pytest.mark.parametrize("group", ops.D4_SUBGROUPS)
def test_invariant_to_every_element_of_its_group_and_to_no_other(group):
  gcnn, x = gcnn_from_cnn(_cnn(1), group), _images(1)
  base = gcnn(x)
  for g in range(8):
    error = _relative(gcnn(ops.apply_element("D4", g, x, axes=(1, 2))), base)
    if g in ops.d4_elements(group):
      assert error <= 1e-5, (group, g, error)
    else:
      assert error > 1e-3, (group, g, error)


def test_the_trivial_group_gives_the_cnn_itself():
  cnn, x = _cnn(2), _images(2)
  np.testing.assert_allclose(gcnn_from_cnn(cnn, "trivial")(x), cnn(x), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jointly_normalised_average(cnn, x, (0,)),
                             GroupAveraged(cnn, "trivial")(x), rtol=1e-5, atol=1e-6)


def test_it_starts_near_the_group_averaged_cnn_and_differs_only_by_the_joint_statistics():
  """The same average over the group as GroupAveraged(cnn, H), except that each layer norm
  sees every copy's map at once: close, not equal."""
  cnn, x = _cnn(3), _images(3, batch=4, size=11)
  gcnn, averaged = gcnn_from_cnn(cnn, "D4"), GroupAveraged(cnn, "D4")
  gap = _relative(gcnn(x), averaged(x))
  assert 0 < gap < 0.2, gap


def test_layers_hold_the_cnn_kernels_on_the_identity_slice_and_zeros_elsewhere():
  cnn = _cnn(4)
  gcnn = gcnn_from_cnn(cnn, "C4")
  lift, hidden = [layer for _, layer in weight_sharing_layers(gcnn)]
  kernel = np.asarray(cnn.convs[1].kernel[...])                       # [3, 3, 4, 4] HWIO
  canonical = np.transpose(kernel, (3, 2, 0, 1)).reshape(4, 4, 9)
  weight = np.asarray(hidden.weight[...]).reshape(4, 4, 4, 9)          # [C_out, C_in, G, k²]
  stack = np.asarray(lift.representation_stack())
  identity = int(np.argmin(np.abs(stack - np.eye(9)).sum(axis=(1, 2))))
  np.testing.assert_array_equal(weight[:, :, identity], canonical)
  assert not np.any(np.delete(weight, identity, axis=2))
  np.testing.assert_array_equal(hidden.bias[...], cnn.convs[1].bias[...])
  assert lift.kernel_mask == hidden.kernel_mask == "none"


def test_the_cnn_is_not_changed_by_training_the_expanded_model():
  cnn = _cnn(5)
  before = np.asarray(cnn.convs[0].kernel[...])
  gcnn = gcnn_from_cnn(cnn, "flip")
  layer = next(layer for _, layer in weight_sharing_layers(gcnn))
  layer.weight[...] = layer.weight[...] + 1.0
  gcnn.head.kernel[...] = gcnn.head.kernel[...] * 0
  np.testing.assert_array_equal(cnn.convs[0].kernel[...], before)
  assert np.any(cnn.head.kernel[...])


def test_gradients_reach_every_group_slice():
  gcnn, x = gcnn_from_cnn(_cnn(6), "C2"), _images(6)
  grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(gcnn)
  hidden = np.asarray(grads.convs[1].weight[...]).reshape(4, 4, 2, 9)
  assert np.all(np.abs(hidden).sum(axis=(0, 1, 3)) > 0)  # the zero slices learn too


@pytest.mark.parametrize("make, message", [
    (lambda: create_model("gcnn", num_classes=10, rngs=nnx.Rngs(0), channels=2, num_blocks=2,
                          kernel_size=3), "cnn: a ConvNet of WSLiftConv layers is not accepted; expected a plain"),
    (lambda: nnx.Linear(2, 2, rngs=nnx.Rngs(0)), "cnn: a Linear is not accepted"),
])
def test_a_model_that_is_not_a_plain_cnn_is_refused_in_one_line(make, message):
  with pytest.raises(ValueError, match=message):
    gcnn_from_cnn(make(), "C4")


def test_an_even_kernel_or_an_unknown_group_is_refused_in_one_line():
  even = create_model("cnn", num_classes=10, rngs=nnx.Rngs(0), channels=2, num_blocks=1,
                      kernel_size=4)
  with pytest.raises(ValueError, match=r"cnn.convs\[0\]: kernel \(4, 4\).*odd square kernel"):
    gcnn_from_cnn(even, "C4")
  with pytest.raises(ValueError, match="group: 'C8' is not accepted; expected one of"):
    gcnn_from_cnn(_cnn(), "C8")


def test_a_committed_selector_expands_its_backbone_into_the_answers_gcnn():
  """discover_gcnn(selector, keep_backbone=True, expand_backbone=True): the backbone (a copy)
  becomes the answer's G-CNN with its filters, named as such in the record."""
  from ds_symmetry.discovery import discover_gcnn
  from ds_symmetry.nn import SubgroupSelector
  cnn, x = _cnn(7), _images(7)
  selector = SubgroupSelector(cnn)
  selector.logits[...] = jnp.zeros(10).at[ops.D4_SUBGROUPS.index("C4")].set(5.0)
  found = discover_gcnn(selector, keep_backbone=True, expand_backbone=True)
  record = found.record()
  assert record["group"] == "C4" and record["kept_backbone"] and record["expanded_backbone"]
  assert not found.rebuilt
  assert {layer.group for _, layer in weight_sharing_layers(found.model)} == {"C4"}
  expected = jointly_normalised_average(selector.backbone, x, ops.d4_elements("C4"))
  assert _relative(found.model(x), expected) <= 1e-5
  with pytest.raises(ValueError, match="expand_backbone: True is not accepted without"):
    discover_gcnn(selector, keep_backbone=False, expand_backbone=True, build=lambda g: None)


def test_a_run_record_of_an_expanded_backbone_rebuilds_the_answers_gcnn():
  """restore.build_model: a discovery record with expanded_backbone gives the answer's exact
  G-CNN without a disk mask (the layout its checkpoints hold); the learning rate it trains at
  is the backbone's divided by |H|."""
  from ds_symmetry.train import base_config
  from ds_symmetry.train.restore import build_model
  from ds_symmetry.train.trainer import learning_rate_scale
  from ds_symmetry.train.variants import model_options
  config = base_config()
  config.model = "subgroup_cnn"
  config.model_options = model_options("subgroup_cnn", 4)
  record = {"group": "flip", "order": 2, "kept_backbone": True, "expanded_backbone": True}
  model = build_model(config, 10, ({}, record))
  layers = [layer for _, layer in weight_sharing_layers(model)]
  assert {layer.group for layer in layers} == {"flip"}
  assert {layer.kernel_mask for layer in layers} == {"none"}
  assert learning_rate_scale(record) == 0.5 and learning_rate_scale(None) == 1.0
  averaged = build_model(config, 10, ({}, dict(record, expanded_backbone=False)))
  assert isinstance(averaged, GroupAveraged) and averaged.group == "flip"
