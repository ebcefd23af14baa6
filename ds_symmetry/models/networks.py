"""The paper's networks (``docs/paper_reference.md`` §3), built from ``ds_symmetry.nn``.

Each network is parameterised by its *layer family*:

* ``"plain"``  — ordinary convolutions (CNN baselines), maps ``[B, H, W, C]``;
* ``"exact"``  — weight-sharing layers with a frozen exact group (the G-CNN);
* ``"learned"`` — weight-sharing layers with learned doubly stochastic stacks (WSCNN).

Exact and learned share one code path (``WSLiftConv`` / ``WSGroupConv``); maps carry the group
axis last, ``[B, H, W, C, G]``.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from ds_symmetry.nn.norms import ChannelBatchNorm, ChannelLayerNorm, GroupLayerNorm
from ds_symmetry.nn.plain import ChannelLinear, torch_conv, torch_linear
from ds_symmetry.nn.stacks import renamed_sharing
from ds_symmetry.nn.weight_sharing import WSGroupConv, WSLiftConv
from ds_symmetry.ops.normalization import spatial_max_pool

FAMILIES = ("plain", "exact", "learned")


class _LayerFactory:
  """Builds the first (lifting) and hidden convolutions of one family.

  ``ws_options`` may hold the lifting layer's ``elements`` and the group layers'
  ``factorise``, ``tie`` and ``cayley_temperature``; with a ``tie`` other than ``"none"`` the
  factory hands every group layer the lifting layer it builds first (and, for
  ``tie="shared"``, the first group layer's ``A`` logits: that layer owns them and is built
  with ``tie="spatial"``)."""

  _GROUP_ONLY = ("factorise", "tie", "cayley_temperature")
  _LIFT_ONLY = ("elements",)

  def __init__(self, family: str, *, group: Optional[str], num_elements: int,
               ws_options: dict[str, Any], compute_dtype, rngs: nnx.Rngs):
    if family not in FAMILIES:
      raise ValueError(f"family must be one of {FAMILIES}; got {family!r}")
    if "sharing" in ws_options:
      raise ValueError(renamed_sharing(ws_options["sharing"]))
    self.family, self.rngs, self.compute_dtype = family, rngs, compute_dtype
    self.ws_kwargs = dict(ws_options, compute_dtype=compute_dtype)
    self.group_kwargs = {key: self.ws_kwargs.pop(key) for key in self._GROUP_ONLY
                         if key in self.ws_kwargs}
    self.lift_kwargs = {key: self.ws_kwargs.pop(key) for key in self._LIFT_ONLY
                        if key in self.ws_kwargs}
    if family == "exact":
      self.ws_kwargs.update(group=group, num_elements=None)
      self.group_kwargs.pop("factorise", None)
      self.group_kwargs.pop("tie", None)
    elif family == "learned":
      self.ws_kwargs.update(group=None, num_elements=num_elements)
    self.tie = self.group_kwargs.get("tie", "none")
    self.lifting, self.shared_group_logits = None, None

  def first(self, c_in, c_out, k, padding):
    if self.family == "plain":
      return torch_conv(c_in, c_out, k, padding=padding, compute_dtype=self.compute_dtype,
                        rngs=self.rngs)
    self.lifting = WSLiftConv(c_in, c_out, k, padding=padding, rngs=self.rngs,
                              **self.ws_kwargs, **self.lift_kwargs)
    return self.lifting

  def hidden(self, c_in, c_out, k, padding):
    if self.family == "plain":
      return torch_conv(c_in, c_out, k, padding=padding, compute_dtype=self.compute_dtype,
                        rngs=self.rngs)
    kwargs = dict(self.ws_kwargs, **self.group_kwargs)
    if self.tie != "none":
      kwargs["spatial_source"] = self.lifting
      if self.tie == "shared":
        if self.shared_group_logits is None:
          kwargs["tie"] = "spatial"  # the first group layer owns the shared A
        else:
          kwargs["group_logits_source"] = self.shared_group_logits
    layer = WSGroupConv(c_in, c_out, k, padding=padding, rngs=self.rngs, **kwargs)
    if self.tie == "shared" and self.shared_group_logits is None:
      self.shared_group_logits = layer.group_logits
    return layer


def _check_input_size(x: jnp.ndarray, minimum: int, network: str) -> None:
  """Raises ``ValueError`` unless ``x`` (``[B, H, W, C]``) is at least ``minimum`` pixels high
  and wide: smaller inputs would leave an empty map and NaN logits."""
  if x.ndim != 4:
    raise ValueError(f"{network}: input must be [B, H, W, C] images; got shape {x.shape}")
  if min(x.shape[1], x.shape[2]) < minimum:
    raise ValueError(f"{network}: input of {x.shape[1]}×{x.shape[2]} pixels is too small; the "
                     f"smallest input size for this network is {minimum}×{minimum}")


def _shrink(padding: str, kernel_size: int) -> int:
  """Pixels lost per side pair by one stride-1 convolution with ``padding``."""
  return kernel_size - 1 if str(padding).upper() == "VALID" else 0


def _global_mean(x: jnp.ndarray) -> jnp.ndarray:
  """Mean over space (and the group axis): ``[B, H, W, C(, G)]`` → ``[B, C]``."""
  return jnp.mean(x, axis=(1, 2) if x.ndim == 4 else (1, 2, 4))


class ConvNet(nnx.Module):
  """The MNIST "simple 5-block CNN": ``num_blocks`` × (conv → layer norm → ReLU), kernel 5,
  'VALID' padding (28 → 24 → 20 → 16 → 12 → 8), global mean over space and group, Linear.

  Input ``[B, H, W, in_channels]``; output logits ``[B, num_classes]``. ``ws_options``: the
  weight-sharing layers' options (``create_model``'s: ``elements``, ``factorise``, ``tie``,
  ``constraint``, …)."""

  def __init__(self, family: str, *, num_classes: int, channels: int, in_channels: int = 1,
               num_blocks: int = 5, kernel_size: int = 5, padding: str = "VALID",
               group: Optional[str] = "C4", num_elements: int = 4,
               ws_options: Optional[dict] = None, compute_dtype=None, rngs: nnx.Rngs):
    factory = _LayerFactory(family, group=group, num_elements=num_elements,
                            ws_options=ws_options or {}, compute_dtype=compute_dtype, rngs=rngs)
    self.convs = nnx.List(
        [factory.first(in_channels, channels, kernel_size, padding)]
        + [factory.hidden(channels, channels, kernel_size, padding)
           for _ in range(num_blocks - 1)])
    self.norm = GroupLayerNorm()
    self.head = torch_linear(channels, num_classes, rngs=rngs)
    self.min_input_size = num_blocks * _shrink(padding, kernel_size) + 1

  def features(self, x: jnp.ndarray) -> jnp.ndarray:
    """The last block's map: ``[B, H', W', C]`` (plain) or ``[B, H', W', C, G]``."""
    _check_input_size(x, self.min_input_size, type(self).__name__)
    for conv in self.convs:
      x = jax.nn.relu(self.norm(conv(x)))
    return x

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return self.head(_global_mean(self.features(x)))


class ResidualBlock(nnx.Module):
  """conv → channel norm → ReLU → conv → channel norm → ReLU → + shortcut → batch norm →
  2×2 max pool → ReLU (reference ``models.py``; 'SAME' padding)."""

  def __init__(self, factory: _LayerFactory, c_in: int, c_out: int, kernel_size: int, *,
               rngs: nnx.Rngs):
    self.conv1 = factory.hidden(c_in, c_out, kernel_size, "SAME")
    self.conv2 = factory.hidden(c_out, c_out, kernel_size, "SAME")
    self.norm = ChannelLayerNorm()
    self.shortcut = ChannelLinear(c_in, c_out, rngs=rngs) if c_in != c_out else None
    self.batch_norm = ChannelBatchNorm(c_out, rngs=rngs)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    y = jax.nn.relu(self.norm(self.conv1(x)))
    y = jax.nn.relu(self.norm(self.conv2(y)))
    y = y + (x if self.shortcut is None else self.shortcut(x))
    return jax.nn.relu(spatial_max_pool(self.batch_norm(y), 2))


class ResNet(nnx.Module):
  """The CIFAR-10 ResNet (Knigge et al. 2022 App. B.1 as in the reference): stem conv →
  batch norm → ReLU, blocks C→C and C→2C, global mean pool, head Linear(2C→256, no bias) →
  BN → ReLU → Dropout(0.3) → Linear(256→num_classes). Kernel 7.

  ``stem_padding``: the reference's WSResNet and CNN use 'SAME' but its GResNet lifting
  layer is unpadded ('VALID', 32 → 26 px); the factory mirrors that for ``gresnet``."""

  def __init__(self, family: str, *, num_classes: int, channels: int, in_channels: int = 3,
               kernel_size: int = 7, stem_padding: str = "SAME", group: Optional[str] = "C4",
               num_elements: int = 4, hidden_features: int = 256, dropout: float = 0.3,
               ws_options: Optional[dict] = None, compute_dtype=None, rngs: nnx.Rngs):
    factory = _LayerFactory(family, group=group, num_elements=num_elements,
                            ws_options=ws_options or {}, compute_dtype=compute_dtype, rngs=rngs)
    self.stem = factory.first(in_channels, channels, kernel_size, stem_padding)
    self.stem_norm = ChannelBatchNorm(channels, rngs=rngs)
    self.blocks = nnx.List([
        ResidualBlock(factory, channels, channels, kernel_size, rngs=rngs),
        ResidualBlock(factory, channels, 2 * channels, kernel_size, rngs=rngs),
    ])
    self.head_hidden = torch_linear(2 * channels, hidden_features, use_bias=False, rngs=rngs)
    self.head_norm = ChannelBatchNorm(hidden_features, rngs=rngs)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.head_out = torch_linear(hidden_features, num_classes, rngs=rngs)
    # Two 2×2 max pools need at least 4 pixels after the stem.
    self.min_input_size = 4 + _shrink(stem_padding, kernel_size)

  def features(self, x: jnp.ndarray) -> jnp.ndarray:
    _check_input_size(x, self.min_input_size, type(self).__name__)
    x = jax.nn.relu(self.stem_norm(self.stem(x)))
    for block in self.blocks:
      x = block(x)
    return x

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    h = _global_mean(self.features(x))
    h = self.dropout(jax.nn.relu(self.head_norm(self.head_hidden(h))))
    return self.head_out(h)
