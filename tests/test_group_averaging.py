"""nn.GroupAveraged: exact invariance to its own subgroup (and no other), equality with the
selector's readout it is kept from, gradients through every pass, one-line refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ds_symmetry import ops
from ds_symmetry.discovery import discover_gcnn
from ds_symmetry.nn import GroupAveraged, SubgroupSelector


def _mlp(size=7, seed=0):
  rngs = nnx.Rngs(seed)
  return nnx.Sequential(lambda x: x.reshape(x.shape[0], -1),
                        nnx.Linear(size * size, 16, rngs=rngs), nnx.relu,
                        nnx.Linear(16, 10, rngs=rngs))


@pytest.mark.parametrize("group", ops.D4_SUBGROUPS)
def test_invariant_to_every_element_of_its_group_and_to_no_other(group):
  model = GroupAveraged(_mlp(), group)
  x = jax.random.normal(jax.random.key(1), (4, 7, 7, 1))
  base = model(x)
  assert base.shape == (4, 10) and base.dtype == jnp.float32
  for g in range(8):
    moved = model(ops.apply_element("D4", g, x, axes=(1, 2)))
    error = float(jnp.max(jnp.abs(moved - base)) / jnp.max(jnp.abs(base)))
    if g in ops.d4_elements(group):
      assert error <= 1e-5, (group, g, error)
    else:
      assert error > 1e-3, (group, g, error)


def test_equals_the_numpy_mean_of_the_backbone_over_the_transformed_images():
  backbone = _mlp()
  x = np.asarray(jax.random.normal(jax.random.key(2), (3, 7, 7, 1)))
  # D2 = {e, rot180, flip, flip then rot180}, written out by hand with numpy.
  views = [x, np.rot90(x, 2, axes=(1, 2)), x[:, :, ::-1], np.rot90(x[:, :, ::-1], 2, axes=(1, 2))]
  expected = np.mean([np.asarray(backbone(jnp.asarray(v))) for v in views], axis=0)
  np.testing.assert_allclose(GroupAveraged(backbone, "D2")(jnp.asarray(x)), expected,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(GroupAveraged(backbone, "trivial")(jnp.asarray(x)),
                                backbone(jnp.asarray(x)))


def test_kept_from_a_selector_it_is_the_selectors_readout_of_the_answer():
  selector = SubgroupSelector(_mlp())
  selector.logits[...] = jnp.zeros(10).at[ops.D4_SUBGROUPS.index("flip")].set(5.0)
  found = discover_gcnn(selector, keep_backbone=True)
  assert found.kept_backbone and not found.rebuilt
  assert isinstance(found.model, GroupAveraged) and found.model.group == "flip"
  assert found.record()["kept_backbone"] and found.record()["group"] == "flip"
  x = jax.random.normal(jax.random.key(3), (2, 7, 7, 1))
  np.testing.assert_allclose(found.model(x), selector(x), rtol=1e-6, atol=1e-6)
  # a copy: training the kept model leaves the selector's backbone as it was
  before = np.asarray(selector(x))
  kernel = found.model.backbone.layers[1].kernel
  kernel[...] = kernel[...] + 1.0
  np.testing.assert_array_equal(selector(x), before)


def test_every_element_gets_gradient():
  """The loss of y_H reaches the backbone through each of the |H| passes: its gradient is the
  mean of the per-view gradients (checked against them, computed one view at a time)."""
  backbone = _mlp()
  x = jax.random.normal(jax.random.key(4), (2, 7, 7, 1))
  model = GroupAveraged(backbone, "C4")
  grad = nnx.grad(lambda m: jnp.sum(m(x)))(model)
  per_view = [nnx.grad(lambda b, g=g: jnp.sum(b(ops.apply_element("D4", g, x, axes=(1, 2)))))(
      backbone) for g in ops.d4_elements("C4")]
  expected = jax.tree.map(lambda *g: sum(g) / len(g), *per_view)
  for got, want in zip(jax.tree.leaves(grad["backbone"]), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_bad_input_is_refused_in_one_line():
  with pytest.raises(ValueError, match=r"group: 'C8' is not accepted; expected one of"):
    GroupAveraged(_mlp(), "C8")
  with pytest.raises(ValueError, match="expected square images"):
    GroupAveraged(_mlp(), "C4")(jnp.zeros((1, 7, 6, 1)))
  with pytest.raises(ValueError, match="keep_backbone / expand_backbone: True is not accepted for a Sequential"):
    discover_gcnn(_mlp(), keep_backbone=True)
  with pytest.raises(ValueError, match="build: None is not accepted"):
    discover_gcnn(SubgroupSelector(_mlp()))
