"""A plain CNN turned into the G-CNN of a group, starting from the CNN's own filters.

:func:`gcnn_from_cnn` takes a trained plain :class:`~ds_symmetry.models.ConvNet` ``f`` (the
MNIST CNN: ``nnx.Conv`` blocks, layer norm, ReLU, global mean, linear head) and a group ``H``
acting on the kernel grid (a subgroup of ``D4``, ``ops.D4_SUBGROUPS``), and returns the exact
G-CNN of ``H`` with the same width, depth and kernel size whose weights carry ``f``'s:

* the lifting layer's canonical kernels are ``f``'s first kernels, so its output for element
  ``g`` is ``f``'s first convolution with every kernel transformed by ``g``;
* every group layer's canonical kernel is ``f``'s kernel on the input slice of the identity
  element and zero on the others (*identity slices*): output element ``g`` reads only input
  element ``g``, through ``g``'s transform of ``f``'s kernel;
* biases and the head are ``f``'s.

So group channel ``g`` runs ``f``'s convolutions on ``g⁻¹·x`` (transformed back by ``g``; exact
for square images, odd kernels and 'VALID' or 'SAME' convolutions), and the global mean over
space and the group axis followed by the linear head averages over ``H``. The one difference
from ``GroupAveraged(f, H)``, ``mean_h f(h·x)``: the G-CNN's layer norm takes its statistics
over every element's map at once (``[H, W, C, G]``), where ``f`` normalises each transformed
copy on its own. :func:`jointly_normalised_average` computes exactly what the expanded G-CNN
computes, from ``f``, as an independent check. From there the G-CNN trains as any G-CNN: the
zero slices are free weights (``|H|``× the CNN's hidden-layer weights), so the model keeps
what ``f`` learned and gains the group convolution's capacity.

The kernels are not disk-masked (``kernel_mask="none"``): ``f``'s square kernels are kept
whole; every isometry of the square grid permutes them exactly.

Shapes: the CNN's nnx.Conv kernels ``[k, k, C_in, C_out]`` → lifting weights ``[C_out, C_in,
k²]``, group weights ``[C_out, C_in, |H|·k²]`` (flattened ``(g_in, y, x)``).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ds_symmetry.models.networks import ConvNet, _global_mean
from ds_symmetry.nn.introspection import weight_sharing_layers
from ds_symmetry.nn.subgroup_selection import transformed_copies
from ds_symmetry.nn.weight_sharing import WSGroupConv
from ds_symmetry.ops import groups as groups_ops
from ds_symmetry.ops.normalization import standardize


def _plain_layers(cnn: nnx.Module) -> list:
  """The ``nnx.Conv`` layers of a plain ``ConvNet``; raises for anything else."""
  if not isinstance(cnn, ConvNet) or not all(isinstance(c, nnx.Conv) for c in cnn.convs):
    layers = (f" of {type(cnn.convs[0]).__name__} layers" if isinstance(cnn, ConvNet) else "")
    raise ValueError(f"cnn: a {type(cnn).__name__}{layers} is not accepted; expected a plain "
                     "ConvNet (create_model('cnn', ...): nnx.Conv blocks)")
  for index, conv in enumerate(cnn.convs):
    k = tuple(conv.kernel_size)
    strides = conv.strides if isinstance(conv.strides, (tuple, list)) else (conv.strides or 1,)
    if (len(k) != 2 or k[0] != k[1] or k[0] % 2 == 0 or set(strides) != {1}
        or str(conv.padding).upper() not in ("VALID", "SAME")):
      raise ValueError(f"cnn.convs[{index}]: kernel {tuple(k)}, strides {conv.strides}, padding "
                       f"{conv.padding!r} is not accepted; expected an odd square kernel, "
                       "stride 1 and 'VALID' or 'SAME' padding (the isometries must act exactly)")
  return list(cnn.convs)


def _canonical(kernel: jnp.ndarray) -> jnp.ndarray:
  """nnx.Conv HWIO ``[k, k, C_in, C_out]`` → canonical ``[C_out, C_in, k²]`` (row-major)."""
  k, _, c_in, c_out = kernel.shape
  return jnp.transpose(kernel, (3, 2, 0, 1)).reshape(c_out, c_in, k * k)


def gcnn_from_cnn(cnn: ConvNet, group: str) -> ConvNet:
  """The exact G-CNN of ``group`` carrying ``cnn``'s weights (identity slices; module docstring).

  Args:
    cnn: a plain ``ConvNet`` (``create_model("cnn", ...)``); not changed.
    group: a subgroup of ``D4`` by name (``ops.D4_SUBGROUPS``).

  Returns:
    ``create_model("gcnn", group=group, kernel_mask="none", ...)`` with ``cnn``'s width, depth,
    kernel size, padding and classes, its weights set from ``cnn``: ``[B, H, W, C_in]`` →
    logits ``[B, K]``.
  """
  from ds_symmetry.models.factory import create_model  # pylint: disable=import-outside-toplevel
  if group not in groups_ops.D4_SUBGROUPS:
    raise ValueError(f"group: {group!r} is not accepted; expected one of "
                     f"{list(groups_ops.D4_SUBGROUPS)}")
  convs = _plain_layers(cnn)
  first = convs[0]
  gcnn = create_model(
      "gcnn", num_classes=cnn.head.out_features, rngs=nnx.Rngs(0), group=group,
      channels=first.out_features, in_channels=first.in_features, num_blocks=len(convs),
      kernel_size=first.kernel_size[0], padding=str(first.padding).upper(),
      compute_dtype=first.dtype, kernel_mask="none")
  layers = [layer for _, layer in weight_sharing_layers(gcnn)]
  identity = 0  # element 0 of every group of ops.groups is the identity
  for conv, layer in zip(convs, layers):
    weight = _canonical(conv.kernel[...])
    if isinstance(layer, WSGroupConv):
      d = weight.shape[-1]
      slices = jnp.zeros(weight.shape[:2] + (layer.num_elements * d,), weight.dtype)
      weight = slices.at[..., identity * d:(identity + 1) * d].set(weight)
    layer.weight[...] = weight
    layer.bias[...] = conv.bias[...]
  gcnn.head = nnx.clone(cnn.head)
  return gcnn


def jointly_normalised_average(cnn: ConvNet, x: jnp.ndarray, elements: Sequence[int]
                               ) -> jnp.ndarray:
  """What :func:`gcnn_from_cnn`'s G-CNN computes, from the CNN: ``cnn``'s blocks run on every
  copy ``h·x`` (``h`` in ``elements``, ``D4`` indices), each layer norm taken over all copies'
  maps at once, then the mean over copies and space and the head. ``[B, H, W, C]`` → ``[B, K]``.
  (Normalising each copy on its own instead gives ``GroupAveraged(cnn, H)``.)"""
  convs = _plain_layers(cnn)
  copies = transformed_copies(x, tuple(elements))                   # [G, B, H, W, C]
  num, batch = copies.shape[:2]
  y = copies.reshape((num * batch,) + x.shape[1:])
  for conv in convs:
    y = conv(y)
    joint = jnp.moveaxis(y.reshape((num, batch) + y.shape[1:]), 0, -1)  # [B, H, W, C, G]
    y = jax.nn.relu(standardize(joint, tuple(range(1, joint.ndim)), cnn.norm.epsilon))
    y = jnp.moveaxis(y, -1, 0).reshape((num * batch,) + y.shape[1:4])
  features = _global_mean(jnp.moveaxis(y.reshape((num, batch) + y.shape[1:]), 0, -1))
  return cnn.head(features)
