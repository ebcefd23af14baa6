"""The model of a run: built from its config (with the stacks a discovery froze), and the model
of a workdir restored from one of its checkpoints.

``load_model(workdir)`` is what scripts that look at finished runs use (reports, figures); the
trainer builds its model with :func:`build_model` too, so both agree on what a run trains.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from ds_symmetry import run_files
from ds_symmetry.models import create_model
from ds_symmetry.models.expansion import gcnn_from_cnn
from ds_symmetry.models.factory import exact_model_options
from ds_symmetry.nn.group_averaging import GroupAveraged
from ds_symmetry.nn.introspection import weight_sharing_layers

# Every protocol of ``ds_symmetry.data`` has ten classes.
NUM_CLASSES = 10


def frozen_stacks(model: nnx.Module) -> dict[str, np.ndarray]:
  """``{layer: [G, d, d]}`` of every weight-sharing layer whose stack is frozen."""
  return {name: np.asarray(layer.fixed_stack[...])
          for name, layer in weight_sharing_layers(model) if layer.is_fixed}


def freeze(model: nnx.Module, stacks: dict[str, np.ndarray]) -> None:
  """Freezes ``model``'s layers to ``stacks`` (layer → ``[G, d, d]``), as a discovery did."""
  layers = dict(weight_sharing_layers(model))
  unknown = sorted(set(stacks) - set(layers))
  if unknown:
    raise ValueError(f"frozen stacks for layer(s) {unknown}, which this model does not have")
  for name, stack in stacks.items():  # every stack read first: freezing one drops tied ones
    layers[name].freeze_stack(stack)


def exact_model(config: ml_collections.ConfigDict, num_classes: int, group: str) -> nnx.Module:
  """The exact G-CNN of ``group`` that ``config``'s learned model rounds to when its answer
  cannot keep the learned layers' shapes (``models.exact_model_options``), seeded by
  ``config.seed``."""
  name, options = exact_model_options(config.model, config.model_options.to_dict(), group)
  return create_model(name, num_classes=num_classes, rngs=nnx.Rngs(config.seed), **options)


def build_model(config: ml_collections.ConfigDict, num_classes: int,
                discovered: tuple[dict, dict] | None = None) -> nnx.Module:
  """``create_model(config.model, **config.model_options)`` seeded by ``config.seed``; with
  ``discovered`` (``run_files.load_discovered``'s ``(stacks, record)``) its stacks frozen, or
  the discovered model the record names (a fresh exact G-CNN; a selector's backbone averaged
  over its answer)."""
  if discovered is not None and discovered[1].get("rebuilt"):
    return exact_model(config, num_classes, discovered[1]["group"])
  model = create_model(config.model, num_classes=num_classes, rngs=nnx.Rngs(config.seed),
                       **config.model_options.to_dict())
  if discovered is not None and discovered[1].get("kept_backbone"):
    # A selector's answer with discovery.keep_backbone: its backbone averaged over the group,
    # or (expand_backbone) expanded into the group's G-CNN (weights: the checkpoint's).
    if discovered[1].get("expanded_backbone"):
      return gcnn_from_cnn(model.backbone, discovered[1]["group"])
    return GroupAveraged(model.backbone, discovered[1]["group"])
  if discovered is not None:
    freeze(model, discovered[0])
  return model


def load_model(workdir: str | os.PathLike, step: int | None = None, *,
               num_classes: int = NUM_CLASSES) -> tuple[nnx.Module, ml_collections.ConfigDict,
                                                       int]:
  """``(model, config, step)``: the model of ``workdir`` (its ``config.json``) holding the
  parameters and batch statistics of the checkpoint at ``step`` (the newest when None), in eval
  mode. A checkpoint written after the run was rounded to its discovered G-CNN gets the frozen
  stacks of ``discovered_stacks.npz``; an earlier one the learned model.

  Every checkpoint read is verified (``checkpointing.read_checkpoint``: its digest, finite
  values, this model's parameter shapes). Raises ``FileNotFoundError`` without ``config.json``
  or without a checkpoint, ``checkpointing.CorruptCheckpointError`` when it does not verify
  (with ``step`` None: when none does), ``checkpointing.IncompatibleCheckpointError`` when it
  holds another model.
  """
  # pylint: disable-next=import-outside-toplevel
  from ds_symmetry.train.checkpointing import leaf_signature, read_checkpoint
  saved = run_files.read_config(workdir)
  if saved is None:
    raise FileNotFoundError(f"{run_files.path(workdir, run_files.CONFIG)} not found")
  config = ml_collections.ConfigDict(saved)
  directory = run_files.path(workdir, run_files.CHECKPOINTS)
  discovered = run_files.load_discovered(workdir)
  if step is None:  # the newest checkpoint that verifies, against the model it holds
    step, _ = read_checkpoint(directory)
  if discovered is not None and step < discovered[1]["step"]:
    discovered = None
  model = build_model(config, num_classes, discovered)
  state = nnx.state(model)
  # Verified (digest, finiteness) and checked against this model's parameters.
  step, arrays = read_checkpoint(directory, step,
                                 expected=leaf_signature({"model": nnx.to_pure_dict(state)}),
                                 prefix="['model']")
  nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, arrays["model"]))
  nnx.update(model, state)
  model.eval()
  return model, config, step
