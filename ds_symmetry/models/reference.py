"""Importing the paper's reference (PyTorch) weights into our models.

The reference implementation names its parameters after its modules. For the MNIST networks
(``CNN`` and ``WSCNN``, 1 first convolution + ``num_hidden`` hidden ones):

=====================================  ==========================  ========================
reference entry (PyTorch layout)       our parameter               conversion
=====================================  ==========================  ========================
``first_conv.weight``  CNN             ``convs/0/kernel``          ``[O, I, k, k]`` → HWIO
                                                                   ``[k, k, I, O]``
``first_conv.weight``  WSCNN           ``convs/0/weight``          ``[O, I, k²]`` as is
``first_conv.bias``                    ``convs/0/bias``            ``[O]`` or ``[O,1,1,1]``
                                                                   → ``[O]``
``first_conv.representations``         ``convs/0/logits``          ``[n, d, d]`` as is
``first_conv.id``                      (none: the fixed identity)  checked to be ``I_d``
``convs.{i}.*``                        ``convs/{i+1}/*``           as the first layer; group
                                                                   weights ``[O, I, G·k²]``
                                                                   flattened (g_in, y, x)
``final_linear.weight`` / ``.bias``    ``head/kernel`` / ``bias``  ``[classes, C]`` →
                                                                   ``[C, classes]``
=====================================  ==========================  ========================

A Lightning checkpoint prefixes every name with ``model.``; that prefix is removed. The
ResNets and the reference's G-CNN (a different layer library with other parameters) are not
supported: :func:`import_reference_weights` raises ``ValueError`` for them.

The reference's Sinkhorn stops early, as soon as every row and column sum of the whole stack is
within ``torch.allclose``'s default tolerance of 1 (at most 20 rounds). Our layers always run
``sinkhorn_iters`` rounds unless ``sinkhorn_tol`` is set; with
``sinkhorn_tol=REFERENCE_SINKHORN_TOL`` each matrix stops at the same test (decided per matrix,
not for the whole stack at once), which reproduces the reference's stacks to float32 rounding
on its test vectors; always running 20 rounds moves those stacks by up to about 1e-7.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ds_symmetry.models.factory import create_model
from ds_symmetry.models.networks import ConvNet
from ds_symmetry.nn.weight_sharing import _WeightSharingConv

# torch.allclose(sums, 1): |sum - 1| <= atol + rtol·1 = 1e-8 + 1e-5.
REFERENCE_SINKHORN_TOL = 1e-5 + 1e-8
LIGHTNING_PREFIX = "model."
IDENTITY_TOLERANCE = 1e-6


def load_state_dict(source: Any, prefix: str = "") -> dict[str, np.ndarray]:
  """A reference state dict as ``{name: float32/int numpy array}``.

  Args:
    source: a mapping of names to arrays (numpy, jax or torch tensors), the path of an ``.npz``
      file, or the path of a Lightning ``.ckpt`` (needs PyTorch; its ``state_dict`` is used).
    prefix: keep only the entries whose name starts with ``prefix`` and drop it from the name
      (e.g. ``"wscnn_sd/"`` for an ``.npz`` that holds several things). A leading ``model.``
      (Lightning's) is removed afterwards when every name has it.

  Raises ``ValueError`` for an unknown file type or when nothing matches ``prefix``.
  """
  if isinstance(source, Mapping):
    entries = dict(source)
  elif isinstance(source, (str, os.PathLike)):
    path = os.fspath(source)
    if path.endswith(".npz"):
      try:
        with np.load(path) as data:
          entries = {name: data[name] for name in data.files}
      except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"source: {path!r} could not be read as .npz ({error}); expected an "
                         "intact np.savez file of the reference's state dict") from None
      if not entries:
        raise ValueError(f"source: {path!r} holds no arrays; expected the reference's state "
                         "dict")
    elif path.endswith(".ckpt") or path.endswith(".pt") or path.endswith(".pth"):
      entries = _torch_state_dict(path)
    else:
      raise ValueError(f"source: {path!r} is not accepted; expected a .npz file, a Lightning "
                       f".ckpt (or torch .pt/.pth) file, or a mapping of names to arrays")
  else:
    raise ValueError(f"source: {type(source).__name__} is not accepted; expected a mapping of "
                     f"names to arrays or the path of a .npz / .ckpt file")
  if prefix:
    entries = {name[len(prefix):]: value for name, value in entries.items()
               if name.startswith(prefix)}
    if not entries:
      raise ValueError(f"prefix: no entry of the state dict starts with {prefix!r}")
  if entries and all(name.startswith(LIGHTNING_PREFIX) for name in entries):
    entries = {name[len(LIGHTNING_PREFIX):]: value for name, value in entries.items()}
  return {name: _to_numpy(value) for name, value in entries.items()}


def _torch_state_dict(path: str) -> dict[str, Any]:
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ImportError(f"reading {path!r} needs PyTorch (pip install torch); or save its state "
                      f"dict as .npz where PyTorch is installed: np.savez(out, **{{k: "
                      f"v.numpy() for k, v in state_dict.items()}})") from error
  checkpoint = torch.load(path, map_location="cpu", weights_only=True)
  return checkpoint.get("state_dict", checkpoint)


def _to_numpy(value) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor
    value = value.detach().cpu().numpy()
  array = np.asarray(value)
  return array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array


def _layer_entries(layer: nnx.Module) -> dict[str, tuple[str, tuple[int, ...]]]:
  """Reference entry name (within the layer) → (our parameter name, reference shape)."""
  if isinstance(layer, _WeightSharingConv):
    if not layer.is_learned:
      raise ValueError("import_reference_weights: exact (G-CNN) layers are not supported; the "
                       "reference's G-CNN uses another layer library")
    # Layer options the reference does not have (when this version of the layer offers them).
    for option, reference_value in (("factorise", "none"), ("tie", "none"),
                                    ("constraint", "sinkhorn"), ("kernel_mask", "none")):
      value = getattr(layer, option, reference_value)
      if value != reference_value:
        raise ValueError(f"import_reference_weights: a layer with {option}={value!r} has no "
                         f"reference counterpart; build the model with "
                         f"{option}={reference_value!r}")
    d = layer.representation_size
    entries = {"weight": ("weight", tuple(layer.weight.shape))}
    if layer.bias is not None:
      entries["bias"] = ("bias", (layer.out_features, 1, 1, 1))
    if layer.logits is not None:
      entries["representations"] = ("logits", tuple(layer.logits.shape))
    if layer.fix_identity:
      entries["id"] = (None, (1, d, d))
    return entries
  if isinstance(layer, nnx.Conv):
    k_h, k_w, c_in, c_out = layer.kernel.shape
    entries = {"weight": ("kernel", (c_out, c_in, k_h, k_w))}
    if layer.bias is not None:
      entries["bias"] = ("bias", (c_out,))
    return entries
  if isinstance(layer, nnx.Linear):
    c_in, c_out = layer.kernel.shape
    entries = {"weight": ("kernel", (c_out, c_in))}
    if layer.bias is not None:
      entries["bias"] = ("bias", (c_out,))
    return entries
  raise ValueError(f"import_reference_weights: no reference layout for {type(layer).__name__}")


def _convert(layer: nnx.Module, ours: str, array: np.ndarray) -> np.ndarray:
  """Reference layout → ours, for one entry already checked to have the reference shape."""
  if isinstance(layer, _WeightSharingConv):
    return array.reshape(-1) if ours == "bias" else array
  if ours == "kernel" and isinstance(layer, nnx.Conv):
    return np.transpose(array, (2, 3, 1, 0))  # [O, I, kh, kw] -> [kh, kw, I, O]
  if ours == "kernel":  # Linear [out, in] -> [in, out]
    return array.T
  return array


def _reference_layers(model: nnx.Module) -> dict[str, nnx.Module]:
  """Reference module name → our layer, for the networks with a known reference layout."""
  if not isinstance(model, ConvNet):
    raise ValueError(f"model: {type(model).__name__} is not supported; only the MNIST "
                     f"networks (cnn, wscnn) have a reference layout here")
  layers = {"first_conv": model.convs[0], "final_linear": model.head}
  for index, conv in enumerate(list(model.convs)[1:]):
    layers[f"convs.{index}"] = conv
  return layers


def _bias_shapes(layer, reference_shape):
  """A weight-sharing bias may come as ``[O, 1, 1, 1]`` (the reference) or ``[O]``."""
  return {reference_shape, (reference_shape[0],)}


def import_reference_weights(model: nnx.Module, state_dict: Any, *, prefix: str = "") -> nnx.Module:
  """Copies a reference state dict into ``model`` (in place) and returns the model.

  Every entry must map onto a parameter with the right shape and every parameter must get an
  entry: a missing, unexpected or wrongly shaped entry raises ``ValueError`` naming it. The
  reference's fixed identities (``*.id``) are checked to be identities (and require a model
  built with ``fix_identity=True``) but are not parameters here.

  Args:
    model: a ``cnn`` or ``wscnn`` from :func:`ds_symmetry.models.create_model` with the
      reference's sizes (see :func:`model_from_reference` to build one from the state dict).
    state_dict: anything :func:`load_state_dict` accepts.
    prefix: passed to :func:`load_state_dict`.
  """
  entries = load_state_dict(state_dict, prefix=prefix)
  layers = _reference_layers(model)
  expected = {}
  for module_name, layer in layers.items():
    for entry, spec in _layer_entries(layer).items():
      expected[f"{module_name}.{entry}"] = (layer, *spec)
  missing = sorted(set(expected) - set(entries))
  unexpected = sorted(set(entries) - set(expected))
  if missing or unexpected:
    raise ValueError(f"state_dict does not match this {type(model).__name__}: missing entries "
                     f"{missing}, unexpected entries {unexpected}")
  values = {}
  for name, (layer, ours, shape) in expected.items():
    array = entries[name]
    allowed = _bias_shapes(layer, shape) if ours == "bias" else {shape}
    if tuple(array.shape) not in allowed:
      raise ValueError(f"state_dict[{name!r}]: shape {tuple(array.shape)} is not accepted; "
                       f"expected {shape} for this model")
    if ours is None:  # the fixed identity
      error = float(np.max(np.abs(array[0] - np.eye(shape[-1], dtype=np.float32))))
      if error > IDENTITY_TOLERANCE:
        raise ValueError(f"state_dict[{name!r}]: expected the fixed identity; it differs from "
                         f"I by {error:.3g}")
      continue
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
      raise ValueError(f"state_dict[{name!r}]: holds {int(np.sum(~np.isfinite(array)))} "
                       "non-finite values; expected finite weights")
    values[(id(layer), ours)] = jnp.asarray(_convert(layer, ours, array))
  for layer in layers.values():
    for ours in ("weight", "kernel", "bias", "logits"):
      if (id(layer), ours) in values:
        variable = getattr(layer, ours)
        variable.set_value(values[(id(layer), ours)].astype(variable.get_value().dtype))
  return model


_HIDDEN = re.compile(r"^convs\.(\d+)\.weight$")


def reference_options(state_dict: Mapping[str, np.ndarray]) -> tuple[str, dict[str, Any]]:
  """``(model name, create_model options)`` read off a reference MNIST state dict's shapes."""
  if "first_conv.weight" not in state_dict or "final_linear.weight" not in state_dict:
    raise ValueError("state_dict: expected the reference's MNIST CNN / WSCNN entries "
                     "'first_conv.weight' and 'final_linear.weight'; got "
                     f"{sorted(state_dict)[:6]}…")
  first = state_dict["first_conv.weight"]
  hidden = [int(m.group(1)) for m in map(_HIDDEN.match, state_dict) if m]
  options = {"channels": int(first.shape[0]), "in_channels": int(first.shape[1]),
             "num_blocks": 1 + len(hidden),
             "num_classes": int(state_dict["final_linear.weight"].shape[0])}
  if "first_conv.representations" in state_dict:
    fixed = "first_conv.id" in state_dict
    options.update(kernel_size=math.isqrt(int(first.shape[2])), fix_identity=fixed,
                   num_elements=int(state_dict["first_conv.representations"].shape[0]) + fixed)
    return "wscnn", options
  if first.ndim != 4:
    raise ValueError(f"state_dict['first_conv.weight']: shape {first.shape} is neither a CNN "
                     f"kernel [O, I, k, k] nor a WSCNN weight [O, I, k²]")
  options["kernel_size"] = int(first.shape[-1])
  return "cnn", options


def model_from_reference(state_dict: Any, *, prefix: str = "", seed: int = 0,
                         reproduce_early_exit: bool = True, **options) -> nnx.Module:
  """Builds the ``cnn`` / ``wscnn`` a reference state dict describes and loads it.

  Sizes (channels, input channels, blocks, kernel size, elements, classes, fixed identity) are
  read from the shapes. With ``reproduce_early_exit`` a ``wscnn`` gets
  ``sinkhorn_tol=REFERENCE_SINKHORN_TOL`` so its stacks match the reference's. ``options`` are
  passed to :func:`ds_symmetry.models.create_model` (e.g. ``sinkhorn_iters``).

  Example::

    model = model_from_reference("lightning_logs/version_0/checkpoints/last.ckpt")
    model.eval()
    logits = model(images_nhwc)     # images [B, 28, 28, 1] -> [B, 10]
  """
  entries = load_state_dict(state_dict, prefix=prefix)
  name, inferred = reference_options(entries)
  num_classes = inferred.pop("num_classes")
  if name == "wscnn" and reproduce_early_exit:
    inferred["sinkhorn_tol"] = REFERENCE_SINKHORN_TOL
  inferred.update(options)
  model = create_model(name, num_classes=num_classes, rngs=nnx.Rngs(seed), **inferred)
  return import_reference_weights(model, entries)


def import_reference_layer(layer: _WeightSharingConv, *, weight, bias=None, representations=None,
                           identity=None) -> _WeightSharingConv:
  """Loads one reference ``WSLiftConv2d`` / ``WSConv2d``'s tensors into our layer (in place).

  Shapes (reference layout): ``weight [O, I, d']`` (``d' = k²`` lifting, ``G·k²`` group,
  flattened (g_in, y, x)), ``bias [O, 1, 1, 1]`` or ``[O]``, ``representations [n, d, d]`` (the
  free logits), ``identity [1, d, d]`` (optional check of the fixed identity).
  """
  given = {"weight": weight, "bias": bias, "representations": representations, "id": identity}
  entries = {k: _to_numpy(v) for k, v in given.items() if v is not None}
  specs = _layer_entries(layer)
  for key, array in entries.items():
    if key not in specs:
      raise ValueError(f"{key}: this layer has no such parameter (layer entries: "
                       f"{sorted(specs)})")
    ours, shape = specs[key]
    allowed = _bias_shapes(layer, shape) if ours == "bias" else {shape}
    if tuple(array.shape) not in allowed:
      raise ValueError(f"{key}: shape {tuple(array.shape)} is not accepted; expected {shape}")
    if ours is None:
      error = float(np.max(np.abs(array[0] - np.eye(shape[-1], dtype=np.float32))))
      if error > IDENTITY_TOLERANCE:
        raise ValueError(f"identity: differs from I by {error:.3g}")
      continue
    getattr(layer, ours).set_value(jnp.asarray(_convert(layer, ours, array)))
  missing = sorted(set(k for k, (ours, _) in specs.items() if ours) - set(entries))
  if missing:
    raise ValueError(f"missing reference tensors for this layer: {missing}")
  return layer
