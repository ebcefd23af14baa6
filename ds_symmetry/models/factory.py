"""``create_model(name, *, num_classes, rngs, **options)``: the paper's models by name.

=========  =======================================================================
name       model
=========  =======================================================================
cnn        MNIST CNN, 64 channels (412,170 parameters)
gcnn       MNIST C4 G-CNN, 32 channels (410,890); ``group="D4"`` for D4; 16 channels
           gives the paper's Table 1 "103 K" (103,050). As the reference's G-CNN:
           disk-masked kernels and its N(0, (2/√fan_in)²) init
wscnn      MNIST weight-sharing CNN, 32 channels, 4 elements, fixed identity
           (410,890 free + 121,875 representation logits)
subgroup_cnn  ``nn.SubgroupSelector`` over the MNIST CNN (16 channels): learns which of the
           ten subgroups of D4 the data are invariant to (``candidates``, ``size_prior``,
           ``warmup_steps``; other options go to the CNN)
resnet     CIFAR-10 ResNet, 32 channels (428,170); 64 → 1,660,170; 128 → 6,544,906
gresnet    CIFAR-10 C4 G-ResNet, 32 channels (1,632,394); kernels as ``gcnn``
wsresnet   CIFAR-10 weight-sharing ResNet, 32 channels, 4 elements
           (1,632,394 free + 468,195 representation logits)
=========  =======================================================================

Options (all keyword): ``channels``, ``in_channels``, ``kernel_size``, ``group`` (exact
models: a 2-D group, ``ops.group_names(spatial_dims=2)``), ``num_elements`` (learned models), ``num_blocks`` (MNIST
models), ``dropout`` (ResNets), ``compute_dtype`` (e.g. ``"bfloat16"``: convolutions only;
Sinkhorn and logits stay float32), and the weight-sharing layer options ``fix_identity``,
``logits_init``, ``identity_scale``, ``sinkhorn_iters``, ``sinkhorn_tau``, ``sinkhorn_tol``,
``remat_sinkhorn``, ``constraint`` (``"sinkhorn"``, ``"softmax"``, ``"none"``), the group
layers' ``factorise`` (``"none"``, ``"kronecker"``: ``R_g = A_g ⊗ B_g``) and ``tie`` (``"none"``;
``B`` the lifting layer's stack with ``A`` the layer's own ``"spatial"``, shared ``"shared"``,
from ``B``'s Cayley table ``"cayley"`` or the cyclic shifts ``"cyclic"``; needs
``factorise="kronecker"``; as ``WSGroupConv``'s own; ``nn.stacks.STRUCTURES`` maps the old
single ``sharing`` name to its pair),
``cayley_temperature`` and ``elements`` (lifting layer: ``"independent"``,
``"powers"`` of one learned generator, or ``"power_blend"``); ``kernel_mask``
(``"none"``/``"disk"``) and ``weight_init`` (``"reference"``/``"se2cnn"``) apply to the exact
models too.

:data:`MODEL_DEFAULTS` holds each model's defaults (the exact models': ``kernel_mask="disk"``,
``weight_init="se2cnn"``); an option not in it takes the layer's own default.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from ds_symmetry.models.networks import ConvNet, ResNet
from ds_symmetry.nn.stacks.options import check_structure, renamed_sharing
from ds_symmetry.nn.subgroup_selection import SubgroupSelector

_WS_OPTIONS = ("fix_identity", "logits_init", "identity_scale", "sinkhorn_iters",
               "sinkhorn_tau", "sinkhorn_tol", "remat_sinkhorn", "constraint", "kernel_mask",
               "weight_init", "factorise", "tie", "cayley_temperature", "elements")
# Options that also apply to the exact (G-CNN) models: they shape the canonical kernels.
KERNEL_OPTIONS = ("kernel_mask", "weight_init")

# The reference's G-CNN kernels: disk-masked, N(0, (2/√fan_in)²) init.
_GCNN_KERNELS = {"kernel_mask": "disk", "weight_init": "se2cnn"}

# name -> (network class, layer family, default options)
_MODELS: dict[str, tuple[type, str, dict[str, Any]]] = {
    "cnn": (ConvNet, "plain", {"channels": 64, "in_channels": 1}),
    "gcnn": (ConvNet, "exact", {"channels": 32, "in_channels": 1, "group": "C4",
                                **_GCNN_KERNELS}),
    "wscnn": (ConvNet, "learned", {"channels": 32, "in_channels": 1, "num_elements": 4}),
    "resnet": (ResNet, "plain", {"channels": 32, "in_channels": 3}),
    # The reference's GResNet lifting layer is unpadded (32 -> 26 px); its WSResNet's is not.
    "gresnet": (ResNet, "exact", {"channels": 32, "in_channels": 3, "group": "C4",
                                  "stem_padding": "VALID", **_GCNN_KERNELS}),
    "wsresnet": (ResNet, "learned", {"channels": 32, "in_channels": 3, "num_elements": 4}),
}
# The subgroup selector (``nn.SubgroupSelector``) over the plain MNIST CNN: its own options,
# the rest go to the backbone.
SELECTOR_OPTIONS = ("candidates", "size_prior", "warmup_steps")
MODEL_NAMES = tuple(_MODELS) + ("subgroup_cnn",)
MODEL_DEFAULTS = {name: dict(options) for name, (_, _, options) in _MODELS.items()}  # copies
MODEL_DEFAULTS["subgroup_cnn"] = {"channels": 16, "in_channels": 1}
# Options of a learned MNIST model that its exact G-CNN keeps (``exact_model_options``).
_SHAPE_OPTIONS = ("channels", "in_channels", "num_blocks", "kernel_size", "padding",
                  "compute_dtype")


def exact_model_options(name: str, options: dict[str, Any], group: str) -> tuple[str, dict]:
  """``(model name, options)`` of the exact G-CNN of ``group`` that a learned MNIST model
  (``"wscnn"`` or ``"subgroup_cnn"``) with ``options`` rounds to: same width, depth and kernel
  size; the reference G-CNN's kernels (disk mask, its init) unless ``options`` name them."""
  if name not in ("wscnn", "subgroup_cnn"):
    raise ValueError(f"name: {name!r} is not accepted; expected 'wscnn' or 'subgroup_cnn'")
  merged = dict(MODEL_DEFAULTS[name], **options)
  exact = {key: merged[key] for key in _SHAPE_OPTIONS if key in merged}
  exact.update({key: merged[key] for key in KERNEL_OPTIONS if key in merged})
  exact["group"] = group
  return "gcnn", exact

_NETWORK_OPTIONS = {
    ConvNet: ("channels", "in_channels", "num_blocks", "kernel_size", "padding", "group",
              "num_elements", "compute_dtype"),
    ResNet: ("channels", "in_channels", "kernel_size", "stem_padding", "group", "num_elements",
             "hidden_features", "dropout", "compute_dtype"),
}


def _compute_dtype(value):
  if value is None or value in ("float32", jnp.float32):
    return None
  if value in ("bfloat16", jnp.bfloat16):
    return jnp.bfloat16
  if value in ("float16", jnp.float16):
    return jnp.float16
  raise ValueError(f"compute_dtype must be one of None, 'float32', 'bfloat16', 'float16'; "
                   f"got {value!r}")


def create_model(name: str, *, num_classes: int, rngs: nnx.Rngs, **options) -> nnx.Module:
  """Builds a model by name (see the module docstring for names and options).

  Returns an NNX module mapping images ``[B, H, W, C]`` to logits ``[B, num_classes]``.
  """
  if name == "subgroup_cnn":
    selector = {key: options.pop(key) for key in SELECTOR_OPTIONS if key in options}
    backbone = create_model("cnn", num_classes=num_classes, rngs=rngs,
                            **dict(MODEL_DEFAULTS["subgroup_cnn"], **options))
    return SubgroupSelector(backbone, **selector)
  if name not in _MODELS:
    raise ValueError(f"model name must be one of {list(MODEL_NAMES)}; got {name!r}")
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
  network, family, defaults = _MODELS[name]
  if "sharing" in options:
    raise ValueError(renamed_sharing(options["sharing"]))
  allowed = set(_NETWORK_OPTIONS[network]) | set(_WS_OPTIONS)
  unknown = sorted(set(options) - allowed)
  if unknown:
    raise ValueError(f"unknown option(s) {unknown} for model {name!r}; valid options: "
                     f"{sorted(allowed)}")
  if family == "plain":
    bad = sorted(set(options) & ({"group", "num_elements"} | set(_WS_OPTIONS)))
    if bad:
      raise ValueError(f"option(s) {bad} do not apply to the plain model {name!r}")
  if family == "exact":
    bad = sorted(set(options) & (set(_WS_OPTIONS) - set(KERNEL_OPTIONS)))
    if bad:
      raise ValueError(f"option(s) {bad} do not apply to the exact model {name!r} (its stack "
                       f"is a fixed group); only {list(KERNEL_OPTIONS)} do")
  if family == "exact" and "num_elements" in options:
    raise ValueError(f"num_elements does not apply to {name!r}: its group "
                     f"{options.get('group', defaults['group'])!r} fixes it; pass group=...")
  if family == "learned" and "group" in options:
    raise ValueError(f"group does not apply to {name!r}: its stacks are learned; use "
                     f"num_elements=... (or the exact model of the same family)")

  merged = dict(defaults, **options)
  ws_options = {key: merged.pop(key) for key in _WS_OPTIONS if key in merged}
  if "factorise" in ws_options or "tie" in ws_options:  # before any layer is built
    check_structure(ws_options.get("factorise", "none"), ws_options.get("tie", "none"))
  merged["compute_dtype"] = _compute_dtype(merged.get("compute_dtype"))
  channels = merged.get("channels")
  if not isinstance(channels, int) or channels < 1:
    raise ValueError(f"channels must be a positive int; got {channels!r}")
  return network(family, num_classes=num_classes, ws_options=ws_options, rngs=rngs, **merged)
