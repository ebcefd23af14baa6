"""Model variants shared by the experiment configs in ``configs/``.

``mnist_variant(arg)`` / ``cifar_variant(arg)`` return ``(model name, model options)`` for a
variant string such as ``"wscnn"``, ``"gcnn16"`` (16 channels) or ``"resnet64"``; an unknown
variant raises ``ValueError`` listing the valid ones.
"""

from __future__ import annotations

import copy
import inspect
import re

import ml_collections
from ml_collections import config_dict

from ds_symmetry.models.factory import KERNEL_OPTIONS, MODEL_DEFAULTS
from ds_symmetry.nn.subgroup_selection import SubgroupSelector
from ds_symmetry.nn.weight_sharing import WSGroupConv, WSLiftConv

MNIST_MODELS = ("cnn", "gcnn", "wscnn", "subgroup_cnn")
CIFAR_MODELS = ("resnet", "gresnet", "wsresnet")
# Weight-sharing layer options a config exposes; their defaults are read from the layer.
_LAYER_OPTIONS = {"fix_identity": bool, "logits_init": str, "sinkhorn_iters": int,
                  "sinkhorn_tau": float, "sinkhorn_tol": float, "remat_sinkhorn": bool,
                  "constraint": str, "cayley_temperature": float,
                  "kernel_mask": str, "weight_init": str, "elements": str,
                  "factorise": str, "tie": str}


def _parse(arg: str | None, models: tuple[str, ...], default: str):
  arg = default if arg in (None, "") else arg
  match = re.fullmatch(r"([a-z_]+?)(\d*)", arg)
  if not match or match.group(1) not in models:
    raise ValueError(f"config variant: {arg!r} is not accepted; expected one of {list(models)}, "
                     f"optionally followed by a channel count (e.g. {models[1]}16)")
  name, channels = match.group(1), match.group(2)
  return name, model_options(name, int(channels) if channels else None)


def _layer_defaults() -> dict:
  """The weight-sharing layers' own defaults for ``_LAYER_OPTIONS`` (``None`` becomes a typed
  placeholder, so ``--config.model_options.sinkhorn_tol=1e-5`` still parses)."""
  parameters = {}
  for layer in (WSLiftConv, WSGroupConv):
    for cls in layer.__mro__:  # the layers' own options and their shared base's
      if "__init__" in vars(cls):
        parameters.update(inspect.signature(cls.__init__).parameters)
  return {name: (config_dict.placeholder(kind) if parameters[name].default is None
                 else parameters[name].default)
          for name, kind in _LAYER_OPTIONS.items()}


def model_options(name: str, channels: int | None = None) -> ml_collections.ConfigDict:
  """Every option ``create_model(name)`` accepts that a config may want to override, with the
  values ``create_model`` would use (the factory's ``MODEL_DEFAULTS``, then the layers' own
  defaults), so ``--config.model_options.<field>=...`` works for each. ``channels=None``: the
  factory's."""
  defaults = MODEL_DEFAULTS[name]
  options = {"channels": defaults["channels"] if channels is None else channels,
             "compute_dtype": config_dict.placeholder(str)}  # None: float32
  layer = dict(_layer_defaults(), **{k: v for k, v in defaults.items() if k in _LAYER_OPTIONS})
  if "num_elements" in defaults:  # learned stacks: every layer option applies
    options.update(num_elements=defaults["num_elements"], **layer)
  elif "group" in defaults:  # an exact group: only the kernels' options apply
    options.update(group=defaults["group"], **{k: layer[k] for k in KERNEL_OPTIONS})
  elif name == "subgroup_cnn":  # the selector's own options (nn.SubgroupSelector's defaults)
    selector = inspect.signature(SubgroupSelector.__init__).parameters
    options.update(size_prior=selector["size_prior"].default,
                   warmup_steps=selector["warmup_steps"].default)
  return ml_collections.ConfigDict(options)


def mnist_variant(arg: str | None):
  return _parse(arg, MNIST_MODELS, "wscnn")


def cifar_variant(arg: str | None):
  return _parse(arg, CIFAR_MODELS, "wsresnet")


def answer_model(group: str) -> str:
  """The fixed prior that trains the answer ``group``: its exact G-CNN's group name, or
  ``"cnn"`` for the trivial group (:func:`answer_config`'s ``model``)."""
  return "cnn" if group == "trivial" else group


def answer_config(config: ml_collections.ConfigDict, model: str) -> ml_collections.ConfigDict:
  """The config that trains a fixed prior in place of a ``subgroup_cnn`` ``config``: ``model``
  ``"cnn"``, the plain CNN of the selector's width, or a subgroup of D4, its exact G-CNN
  (``models.exact_model_options``: the selector's width, depth and kernel size, the reference
  G-CNN's disk mask and init), from fresh weights; everything else (protocol, images, steps,
  optimisation, seed) as ``config``, with the discovery off and the base logits learning rate
  (these models have no logits). ``configs/fixed_group.py`` builds its fixed priors with it,
  and ``discovery.then_train`` its second stage (``"cnn"`` for the trivial group). A copy;
  ``config`` is unchanged.

  Raises:
    ValueError: ``config`` is not a ``subgroup_cnn``'s, or ``model`` is neither ``"cnn"`` nor
      a subgroup of D4.
  """
  # pylint: disable=import-outside-toplevel
  from ds_symmetry.models.factory import exact_model_options
  from ds_symmetry.ops import D4_SUBGROUPS
  from ds_symmetry.train.config import base_config
  if config.model != "subgroup_cnn":
    raise ValueError(f"config.model: {config.model!r} is not accepted; expected 'subgroup_cnn' "
                     f"(the model whose answer is a subgroup of D4)")
  if model != "cnn" and model not in D4_SUBGROUPS:
    raise ValueError(f"model: {model!r} is not accepted; expected 'cnn' or one of "
                     f"{list(D4_SUBGROUPS)}")
  answer = copy.deepcopy(config)  # keeps typed placeholders (a command line may set them)
  answer.logits_learning_rate = base_config().logits_learning_rate
  for name in ("at_step", "when_within"):  # no discovery (the other fields are then idle)
    answer.discovery[name] = 0 if name == "at_step" else 0.0
  for name in ("stop_after", "reinitialize", "keep_backbone", "expand_backbone", "then_train"):
    answer.discovery[name] = False
  channels = config.model_options.channels
  if model == "cnn":
    answer.model = "cnn"
    answer.model_options = model_options("cnn", channels)
  else:
    name, options = exact_model_options("subgroup_cnn", config.model_options.to_dict(), model)
    answer.model = name
    defaults = model_options(name, channels)
    for key, value in options.items():
      defaults[key] = value
    answer.model_options = defaults
  return answer
