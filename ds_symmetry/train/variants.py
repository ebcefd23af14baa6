"""Model variants shared by the experiment configs in ``configs/``.

``mnist_variant(arg)`` / ``cifar_variant(arg)`` return ``(model name, model options)`` for a
variant string such as ``"wscnn"``, ``"gcnn16"`` (16 channels) or ``"resnet64"``; an unknown
variant raises ``ValueError`` listing the valid ones.
"""

from __future__ import annotations

import re

import ml_collections
from ml_collections import config_dict

MNIST_MODELS = ("cnn", "gcnn", "wscnn")
# The factory's default widths, written out so ``--config.model_options.channels=N`` works.
DEFAULT_CHANNELS = {"cnn": 64, "gcnn": 32, "wscnn": 32, "resnet": 32, "gresnet": 32,
                    "wsresnet": 32}
CIFAR_MODELS = ("resnet", "gresnet", "wsresnet")


def _parse(arg: str | None, models: tuple[str, ...], default: str):
  arg = default if arg in (None, "") else arg
  match = re.fullmatch(r"([a-z]+?)(\d*)", arg)
  if not match or match.group(1) not in models:
    raise ValueError(f"config variant: {arg!r} is not accepted; expected one of {list(models)}, "
                     f"optionally followed by a channel count (e.g. {models[1]}16)")
  name, channels = match.group(1), match.group(2)
  return name, model_options(name, int(channels) if channels else DEFAULT_CHANNELS[name])


def model_options(name: str, channels: int) -> ml_collections.ConfigDict:
  """Every option ``create_model(name)`` accepts that a config may want to override, written
  out with the layers' defaults so ``--config.model_options.<field>=...`` works for each."""
  options = {"channels": channels,
             "compute_dtype": config_dict.placeholder(str)}  # None: float32
  if name.startswith("ws"):  # learned stacks
    options.update(num_elements=4, fix_identity=True, logits_init="uniform",
                   sinkhorn_iters=20, sinkhorn_tau=1.0,
                   sinkhorn_tol=config_dict.placeholder(float), remat_sinkhorn=False,
                   constraint="sinkhorn", sharing="full", cayley_temperature=0.05,
                   kernel_mask="none", weight_init="reference")
  elif name.startswith("g"):  # exact group: the reference G-CNN's disk mask and init
    options.update(group="C4", kernel_mask="disk", weight_init="se2cnn")
  return ml_collections.ConfigDict(options)


def mnist_variant(arg: str | None):
  return _parse(arg, MNIST_MODELS, "wscnn")


def cifar_variant(arg: str | None):
  return _parse(arg, CIFAR_MODELS, "wsresnet")
