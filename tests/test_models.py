"""The paper's models: parameter counts, exact invariance of the G-CNN, parity of the
weight-sharing model with exact stacks, learned stacks that are not (yet) symmetric."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ds_symmetry import ops
from ds_symmetry.models import (MODEL_NAMES, RepresentationLogits, count_parameters,
                                create_model, regularizer_terms, representation_stacks)
from ds_symmetry.nn import WSGroupConv, WSLiftConv
from ds_symmetry.testing import group_feature_transform, image_transform

# Reference implementation's counts (docs/paper_reference.md §3).
PARAMETER_COUNTS = [
    ("cnn", {}, 412_170, 0),
    ("gcnn", {}, 410_890, 0),
    ("gcnn", {"channels": 16}, 103_050, 0),
    ("wscnn", {}, 410_890, 121_875),
    ("resnet", {}, 428_170, 0),
    ("resnet", {"channels": 64}, 1_660_170, 0),
    ("resnet", {"channels": 128}, 6_544_906, 0),
    ("gresnet", {}, 1_632_394, 0),
    ("wsresnet", {}, 1_632_394, 468_195),
    # ours, no reference: the 16-channel MNIST CNN (416 + 4·6,416 + 170 = 26,250) and the
    # selector's 10 subgroup logits
    ("subgroup_cnn", {}, 26_260, 0),
]


@pytest.mark.parametrize("name, options, free, representation", PARAMETER_COUNTS)
def test_parameter_counts_equal_the_reference(name, options, free, representation):
  model = nnx.eval_shape(lambda: create_model(name, num_classes=10, rngs=nnx.Rngs(0), **options))
  assert count_parameters(model) == {"free": free, "representation": representation}


@nnx.jit
def apply(model, x):
  """One compiled forward pass (eager NNX dispatch is slow on 2 cores)."""
  return model(x)


def _mnist_batch(seed=0, batch=2):
  return jax.random.normal(jax.random.PRNGKey(seed), (batch, 28, 28, 1))


@pytest.mark.parametrize("group", ["C4", "D4"])
def test_gcnn_logits_are_invariant(group):
  model = create_model("gcnn", num_classes=10, rngs=nnx.Rngs(0), group=group, channels=8)
  x = _mnist_batch()
  logits = apply(model, x)
  scale = float(jnp.max(jnp.abs(logits)))
  for g in range(1, ops.group_order(group)):
    error = float(jnp.max(jnp.abs(apply(model, image_transform(group, g)(x)) - logits)))
    assert error <= 1e-5 * scale, (group, g, error)
  if group == "D4":  # the horizontal flip itself
    flipped = apply(model, jnp.flip(x, axis=2))
    np.testing.assert_allclose(flipped, logits, atol=1e-5 * scale)


@pytest.mark.parametrize("group", ["C4", "D4"])
def test_exact_lifting_layer_is_equivariant(group):
  layer = WSLiftConv(1, 6, 5, group=group, rngs=nnx.Rngs(1))
  x = _mnist_batch(1)
  y = layer(x)
  for g in range(ops.group_order(group)):
    expected = group_feature_transform(group, g)(y)
    np.testing.assert_allclose(layer(image_transform(group, g)(x)), expected, rtol=1e-5,
                               atol=1e-5 * float(jnp.max(jnp.abs(y))))


def _exact_logits(layer, scale=100.0):
  exact = (ops.spatial_permutations("C4", layer.kernel_size) if layer.kind == "lift"
           else ops.shift_twist_permutations("C4", layer.kernel_size))
  return scale * exact[1:]


def test_wscnn_with_exact_stacks_equals_gcnn_with_the_same_weights():
  options = {"channels": 8}
  wscnn = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), **options)
  # Unmasked kernels, as the weight-sharing model's (the G-CNN's default is the disk mask).
  gcnn = create_model("gcnn", num_classes=10, rngs=nnx.Rngs(7), kernel_mask="none", **options)
  # Give the G-CNN the weight-sharing model's free weights ...
  free = nnx.state(wscnn, nnx.All(nnx.Param, nnx.Not(RepresentationLogits)))
  nnx.update(gcnn, free)
  x = _mnist_batch(2)
  assert not np.allclose(apply(wscnn, x), apply(gcnn, x), atol=1e-3)
  # ... and the weight-sharing model logits whose Sinkhorn is the exact C4 representation.
  for _, layer in nnx.iter_modules(wscnn):
    if isinstance(layer, (WSLiftConv, WSGroupConv)):
      layer.logits[...] = _exact_logits(layer)
  stacks = representation_stacks(wscnn)
  assert all(np.allclose(info.stack, info.stack.round(), atol=1e-6) for info in stacks.values())
  np.testing.assert_allclose(apply(wscnn, x), apply(gcnn, x), rtol=1e-5, atol=1e-5)


def test_fresh_wscnn_is_not_invariant():
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=8)
  x = _mnist_batch(3)
  logits = apply(model, x)
  error = float(jnp.max(jnp.abs(apply(model, jnp.rot90(x, 1, axes=(1, 2))) - logits)))
  assert error > 1e-3 * float(jnp.max(jnp.abs(logits)))


def test_gradients_reach_logits_and_weights_and_jit_does_not_recompile():
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=4, num_blocks=2)
  chex.clear_trace_counter()

  @nnx.jit
  @chex.assert_max_traces(n=1)  # a second call with new values must not retrace
  def loss_and_grads(model, x, y):

    def loss_fn(model):
      logits = model(x)
      ce = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
      return ce + 0.1 * regularizer_terms(model)["norm"]
    return nnx.value_and_grad(loss_fn)(model)

  x, y = _mnist_batch(4, batch=4), jnp.arange(4)
  _, grads = loss_and_grads(model, x, y)
  logit_grads = jax.tree_util.tree_leaves(nnx.state(grads, RepresentationLogits))
  weight_grads = jax.tree_util.tree_leaves(
      nnx.state(grads, nnx.All(nnx.Param, nnx.Not(RepresentationLogits))))
  assert len(logit_grads) == 2 and all(float(jnp.abs(g).max()) > 0 for g in logit_grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in logit_grads + weight_grads)
  assert all(float(jnp.abs(g).max()) > 0 for g in weight_grads)
  loss_and_grads(model, x + 1.0, y)


def test_fixed_identity_is_first_and_not_learned():
  layer = WSLiftConv(1, 2, 3, num_elements=4, rngs=nnx.Rngs(0))
  assert layer.logits.shape == (3, 9, 9)
  stack = layer.representation_stack()
  assert stack.shape == (4, 9, 9)
  np.testing.assert_array_equal(stack[0], jnp.eye(9))
  np.testing.assert_allclose(stack.sum(-2), 1.0, atol=1e-5)
  free = WSLiftConv(1, 2, 3, num_elements=4, fix_identity=False, rngs=nnx.Rngs(0))
  assert free.logits.shape == (4, 9, 9)


@pytest.mark.parametrize("name", ["resnet", "gresnet", "wsresnet"])
def test_resnets_run_in_train_and_eval_mode(name):
  model = create_model(name, num_classes=10, rngs=nnx.Rngs(0), channels=4)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
  model.train()
  train_logits = apply(model, x)
  model.eval()
  eval_logits = apply(model, x)
  assert train_logits.shape == eval_logits.shape == (2, 10)
  assert bool(jnp.all(jnp.isfinite(eval_logits)))


def test_bfloat16_compute_keeps_logits_float32():
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=4, num_blocks=2,
                       compute_dtype="bfloat16")
  reference = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=4, num_blocks=2)
  x = _mnist_batch(5)
  assert all(info.stack.dtype == jnp.float32 for info in representation_stacks(model).values())
  np.testing.assert_allclose(apply(model, x), apply(reference, x), atol=0.1, rtol=0.1)


def test_remat_sinkhorn_gives_the_same_gradients():
  def grads(remat):
    layer = WSGroupConv(2, 3, 3, num_elements=4, remat_sinkhorn=remat, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 7, 7, 2, 4))
    return nnx.jit(nnx.grad(lambda layer: jnp.sum(layer(x) ** 2)))(layer)
  plain, remat = grads(False), grads(True)
  for a, b in zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(remat)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad_call, message", [
    (lambda: create_model("vit", num_classes=10, rngs=nnx.Rngs(0)), "cnn"),
    (lambda: create_model("gcnn", num_classes=10, rngs=nnx.Rngs(0), group="SO2"), "group"),
    (lambda: create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), width=3), "width"),
    (lambda: create_model("cnn", num_classes=10, rngs=nnx.Rngs(0), num_elements=4), "plain"),
    (lambda: create_model("gcnn", num_classes=10, rngs=nnx.Rngs(0), num_elements=8),
     "num_elements"),
    (lambda: create_model("wscnn", num_classes=0, rngs=nnx.Rngs(0)), "num_classes"),
    (lambda: create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=0), "channels"),
    (lambda: create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), logits_init="eye"),
     "logits_init"),
    (lambda: WSLiftConv(1, 2, 3, group="C4", num_elements=8, rngs=nnx.Rngs(0)), "num_elements"),
    (lambda: WSLiftConv(1, 2, 3, padding="FULL", rngs=nnx.Rngs(0)), "padding"),
])
def test_bad_input_is_a_clear_error(bad_call, message):
  with pytest.raises(ValueError, match=message):
    bad_call()


def test_channel_mismatch_is_a_clear_error():
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=4, num_blocks=2)
  with pytest.raises(ValueError, match="channels"):
    model(jnp.ones((1, 28, 28, 3)))


def test_every_listed_model_has_its_reference_count_tested_and_is_named_in_errors():
  assert {name for name, *_ in PARAMETER_COUNTS} == set(MODEL_NAMES)
  with pytest.raises(ValueError) as info:
    create_model("nope", num_classes=7, rngs=nnx.Rngs(0))
  assert "got 'nope'" in str(info.value)
  assert all(repr(name) in str(info.value) for name in MODEL_NAMES)


def test_balanced_uniform_init_gives_the_uniform_stacks_with_norm_near_zero():
  uniform = WSGroupConv(2, 3, 3, logits_init="uniform", rngs=nnx.Rngs(0))
  balanced = WSGroupConv(2, 3, 3, logits_init="balanced_uniform", rngs=nnx.Rngs(0))
  np.testing.assert_allclose(balanced.representation_stack(), uniform.representation_stack(),
                             atol=1e-5)
  assert float(uniform.regularizers()["norm"]) > 10.0
  assert float(balanced.regularizers()["norm"]) < 1e-3


def test_group_pool_module_makes_an_exact_lifting_layer_invariant_up_to_rotation():
  from ds_symmetry.nn import GroupPool
  layer = WSLiftConv(1, 4, 5, group="C4", rngs=nnx.Rngs(0))
  x = _mnist_batch(6)
  for mode in ("mean", "max"):
    pool = GroupPool(mode)
    pooled = pool(layer(x))
    rotated = pool(layer(jnp.rot90(x, 1, axes=(1, 2))))
    np.testing.assert_allclose(rotated, jnp.rot90(pooled, 1, axes=(1, 2)), rtol=1e-5,
                               atol=1e-5 * float(jnp.max(jnp.abs(pooled))))
  with pytest.raises(ValueError, match="mode"):
    GroupPool("sum")
