"""The model interface the trainer relies on, for any NNX model built from ``ds_symmetry.nn``.

The trainer never needs to know which model it trains. It calls:

* :func:`regularizer_terms` — ``{name: Σ over the layers}`` for every name in
  :data:`REGULARIZERS` (zeros for models without learned stacks); :func:`regularizer_loss`
  weighs them (the trainer: ``config.<name>_weight``). A new regulariser is a name here, the
  layers' ``regularizers()`` entry and a ``<name>_weight`` config field; nothing else changes.
* :func:`representation_stacks` — every weight-sharing layer's stack, for tracking and plots.
* :func:`max_marginal_error` — the largest Sinkhorn row/column error over all layers.
* :func:`count_parameters` — ``{"free": …, "representation": …}``.
* ``model.train()`` / ``model.eval()`` — Flax NNX's switches for dropout and batch norm.
* :func:`parameter_groups` — ``"logits"`` for ``RepresentationLogits`` (their own learning
  rate), ``"weights"`` for every other parameter: ``optax.multi_transform``'s labels.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from ds_symmetry.nn.subgroup_selection import SubgroupLogits
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


def regularizer_loss(terms: Mapping[str, jnp.ndarray],
                     weights: Mapping[str, float]) -> jnp.ndarray:
  """``Σ_name weights[name] · terms[name]`` over :data:`REGULARIZERS` (a float32 scalar)."""
  total = jnp.zeros((), jnp.float32)
  for name in REGULARIZERS:
    total = total + weights[name] * terms[name]
  return total


def parameter_groups(model: nnx.Module) -> nnx.State:
  """``"logits"`` for every ``RepresentationLogits`` and ``SubgroupLogits``, ``"weights"`` for
  every other ``nnx.Param``.

  Same structure as ``nnx.state(model, nnx.Param)``: the ``param_labels`` of an
  ``optax.multi_transform`` given to ``nnx.Optimizer(model, tx, wrt=nnx.Param)``.
  """
  return jax.tree.map(
      lambda variable: ("logits" if isinstance(variable, (RepresentationLogits, SubgroupLogits))
                        else "weights"),
      nnx.state(model, nnx.Param), is_leaf=lambda x: isinstance(x, nnx.Variable))


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
