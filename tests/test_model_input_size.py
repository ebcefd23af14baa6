"""Inputs too small for a network's unpadded convolutions are an error, not NaN logits."""

import jax.numpy as jnp
import pytest
from flax import nnx

from ds_symmetry.models import create_model


@pytest.mark.parametrize("name, options, size, smallest", [
    ("cnn", {"channels": 4}, 8, 21),                         # 5 blocks of k=5: 28 -> 8
    ("wscnn", {"channels": 4, "num_blocks": 7}, 28, 29),
    ("gcnn", {"channels": 4, "kernel_size": 3}, 10, 11),
    pytest.param("resnet", {"channels": 4}, 3, 4, marks=pytest.mark.slow),   # two 2×2 pools
    pytest.param("gresnet", {"channels": 4}, 9, 10,         # unpadded 7×7 stem, then pools
                 marks=pytest.mark.slow),
])
def test_too_small_input_names_the_smallest_size(name, options, size, smallest):
  in_channels = 3 if "resnet" in name else 1
  model = create_model(name, num_classes=10, rngs=nnx.Rngs(0), **options)
  with pytest.raises(ValueError, match=rf"{size}×{size} pixels is too small.*{smallest}×"
                                       rf"{smallest}"):
    model(jnp.ones((2, size, size, in_channels)))
  model.eval()
  logits = model(jnp.ones((2, smallest, smallest, in_channels)))
  assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
