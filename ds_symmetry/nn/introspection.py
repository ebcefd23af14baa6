"""The model interface the trainer relies on, for any NNX model built from ``ds_symmetry.nn``.

The trainer never needs to know which model it trains. It calls:

* :func:`regularizer_terms` — ``{"norm": Σ norm_loss, "entropy": Σ entropy, "isometry":
  Σ isometry_loss}`` over the layers (zeros for models without learned stacks); the loss adds
  ``λ_norm·norm + λ_ent·entropy + λ_iso·isometry``.
* :func:`representation_stacks` — every weight-sharing layer's stack, for tracking and plots.
* :func:`max_marginal_error` — the largest Sinkhorn row/column error over all layers.
* :func:`count_parameters` — ``{"free": …, "representation": …}``.
* ``model.train()`` / ``model.eval()`` — Flax NNX's switches for dropout and batch norm.
* ``RepresentationLogits`` — the parameter type that gets its own learning rate.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from ds_symmetry.nn.weight_sharing import RepresentationLogits, _WeightSharingConv


@dataclasses.dataclass(frozen=True)
class StackInfo:
  """One layer's representation stack and what it acts on."""
  stack: jnp.ndarray      # [G, d, d]
  kind: str               # "lift" (d = k²) or "group" (d = G·k²)
  kernel_size: int
  num_elements: int
  learned: bool
  group: str | None       # the exact group of a frozen layer, else None


def weight_sharing_layers(model: nnx.Module) -> list[tuple[str, _WeightSharingConv]]:
  """``(path, layer)`` of every weight-sharing convolution, in definition order."""
  layers = []
  for path, module in nnx.iter_modules(model):
    if isinstance(module, _WeightSharingConv):
      layers.append(("/".join(str(p) for p in path), module))
  return layers


REGULARIZERS = ("norm", "entropy", "isometry")


def regularizer_terms(model: nnx.Module) -> dict[str, jnp.ndarray]:
  """Sum of each layer's ``norm``, ``entropy`` and ``isometry`` terms (scalars, float32)."""
  total = {name: jnp.zeros((), jnp.float32) for name in REGULARIZERS}
  for _, layer in weight_sharing_layers(model):
    if layer.is_learned:
      for name, value in layer.regularizers().items():
        total[name] = total[name] + value
  return total


def representation_stacks(model: nnx.Module, learned_only: bool = False) -> dict[str, StackInfo]:
  """Layer path → :class:`StackInfo` for every weight-sharing layer."""
  return {
      path: StackInfo(layer.representation_stack(), layer.kind, layer.kernel_size,
                      layer.num_elements, layer.is_learned, layer.group)
      for path, layer in weight_sharing_layers(model)
      if layer.is_learned or not learned_only
  }


def max_marginal_error(model: nnx.Module) -> jnp.ndarray:
  errors = [layer.marginal_error() for _, layer in weight_sharing_layers(model)]
  return jnp.max(jnp.stack(errors)) if errors else jnp.zeros((), jnp.float32)


def count_parameters(model: nnx.Module) -> dict[str, int]:
  """Trainable parameters split into free weights and representation logits."""
  def size(state):
    return int(sum(x.size for x in jax.tree_util.tree_leaves(state)))
  representation = size(nnx.state(model, RepresentationLogits))
  everything = size(nnx.state(model, nnx.Param))
  return {"free": everything - representation, "representation": representation}
