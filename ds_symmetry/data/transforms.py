"""Symmetry transforms and normalisation for NHWC image batches, in pure jnp.

Every function takes a batch ``[B, H, W, C]`` and per-sample parameters ``[B]``, and is
jit-, vmap- and grad-safe (no Python control flow on values), so it runs inside the jitted
train step.

Conventions:
  * Rotation: ``rotate(x, angles)`` turns the image content counter-clockwise by ``angle``
    radians as displayed (row 0 at the top), about the centre ``((H-1)/2, (W-1)/2)``: for a
    square image, ``rotate(x, [pi/2])[0] == jnp.rot90(x[0], k=1, axes=(0, 1))`` (to float
    rounding). The output pixel at centred offsets ``(y, x)`` (row, column) reads the input at
    ``(cos t * y + sin t * x, -sin t * y + cos t * x)``, sampled bilinearly with zero outside
    the image (torchvision's ``RandomRotation(fill=0)`` with a positive angle turns the same
    way).
  * Scaling: ``scale(x, f)`` is the paper's scaled MNIST: resize to ``int(H*f) x int(W*f)``
    with bilinear interpolation and paste the result, top-left corner at
    ``((H - int(H*f)) // 2, (W - int(W*f)) // 2)``, onto a zero canvas of the original size.
    It is written as two per-sample resampling matrices (rows and columns), with the filter
    of PIL / torchvision's antialiased bilinear resize (a triangle widened by the
    downscaling ratio, weights renormalised at the borders); ``antialias=False`` gives the
    plain 2-tap bilinear of ``torch.nn.functional.interpolate(align_corners=False)``.
    Factor 1 is exactly the identity. The result equals PIL's ``Image.resize(BILINEAR)`` of a
    float (mode ``"F"``) image pasted the same way, to 1e-6 (tested). torchvision resizes
    tensors with the same antialiased filter; when it resizes PIL uint8 images, PIL's
    fixed-point weights and uint8 rounding differ from this float computation by up to about
    one grey level. The paste offset ``(H - int(H*f)) // 2`` is our reading of "centred".
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


def _check_batch(images: jax.Array, params: jax.Array, name: str) -> None:
  if images.ndim != 4:
    raise ValueError(f"images: shape {images.shape} is not accepted; expected [B, H, W, C]")
  if params.shape != images.shape[:1]:
    raise ValueError(f"{name}: shape {params.shape} is not accepted; expected "
                     f"[{images.shape[0]}] (one value per image)")


def to_float(images: jax.Array) -> jax.Array:
  """uint8 ``[B, H, W, C]`` in [0, 255] -> float32 in [0, 1] (torchvision's ``ToTensor``)."""
  return jnp.asarray(images).astype(jnp.float32) / 255.0


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """``(images - mean) / std`` per channel with fixed dataset statistics (``ops.standardize``
  uses the input's own); ``images`` float ``[B, H, W, C]``."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  if mean.shape not in ((1,), (images.shape[-1],)) or mean.shape != std.shape:
    raise ValueError(f"mean/std: shapes {mean.shape}/{std.shape} are not accepted for "
                     f"{images.shape[-1]} channels")
  return (images - mean) / std


def add_gaussian_noise(key: jax.Array, images: jax.Array, std: float) -> jax.Array:
  """``images + std * N(0, 1)`` (the paper's test noise is 0.01, after normalisation)."""
  return images + std * jax.random.normal(key, images.shape, images.dtype)


def bilinear_sample(images: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
  """Samples ``images`` at fractional pixel coordinates, bilinearly, zero outside.

  Args:
    images: ``[B, H, W, C]``.
    rows, cols: ``[B, Ho, Wo]`` coordinates in input pixels (row 0 / column 0 is the first
      pixel centre). A neighbour outside the image contributes 0.

  Returns:
    ``[B, Ho, Wo, C]``.
  """
  batch, height, width, channels = images.shape
  out_shape = rows.shape[1:]
  row0 = jnp.floor(rows)
  col0 = jnp.floor(cols)
  row_frac = rows - row0
  col_frac = cols - col0
  row0 = row0.astype(jnp.int32)
  col0 = col0.astype(jnp.int32)
  flat = images.reshape(batch, height * width, channels)
  result = jnp.zeros((batch, rows.shape[1] * rows.shape[2], channels), images.dtype)
  for d_row, row_weight in ((0, 1.0 - row_frac), (1, row_frac)):
    for d_col, col_weight in ((0, 1.0 - col_frac), (1, col_frac)):
      r = row0 + d_row
      c = col0 + d_col
      valid = (r >= 0) & (r < height) & (c >= 0) & (c < width)
      index = jnp.clip(r, 0, height - 1) * width + jnp.clip(c, 0, width - 1)
      values = jnp.take_along_axis(flat, index.reshape(batch, -1, 1), axis=1)
      weight = jnp.where(valid, row_weight * col_weight, 0.0).astype(images.dtype)
      result = result + values * weight.reshape(batch, -1, 1)
  return result.reshape(batch, *out_shape, channels)


@jax.jit
def rotate(images: jax.Array, angles: jax.Array) -> jax.Array:
  """Rotates each image counter-clockwise by its angle (radians), bilinear, fill 0.

  Args:
    images: float ``[B, H, W, C]``.
    angles: ``[B]`` radians; ``pi/2`` equals ``jnp.rot90(image, 1, axes=(0, 1))``.

  Returns:
    ``[B, H, W, C]``, same shape and dtype.
  """
  angles = jnp.asarray(angles, jnp.float32)
  _check_batch(images, angles, "angles")
  _, height, width, _ = images.shape
  centre_row = (height - 1) / 2.0
  centre_col = (width - 1) / 2.0
  y = jnp.arange(height, dtype=jnp.float32)[:, None] - centre_row  # [H, 1]
  x = jnp.arange(width, dtype=jnp.float32)[None, :] - centre_col  # [1, W]
  cos = jnp.cos(angles)[:, None, None]
  sin = jnp.sin(angles)[:, None, None]
  rows = cos * y + sin * x + centre_row
  cols = -sin * y + cos * x + centre_col
  return bilinear_sample(images, rows, cols)


def resize_paste_matrix(size: int, factors: jax.Array, *, antialias: bool = True) -> jax.Array:
  """Per-sample 1-D resampling matrices for :func:`scale` along an axis of ``size`` pixels.

  Args:
    size: the axis length (input and canvas).
    factors: ``[B]`` scale factors in (0, 1].
    antialias: widen the triangle filter by the downscaling ratio (PIL / torchvision).

  Returns:
    ``[B, size, size]``: row ``o`` holds the weights of input pixels for canvas pixel ``o``;
    rows outside the pasted block are zero.
  """
  factors = jnp.asarray(factors, jnp.float32)
  new_size = jnp.clip(jnp.floor(size * factors), 1, size)  # int(size * f), as float [B]
  top = jnp.floor((size - new_size) / 2)
  out = jnp.arange(size, dtype=jnp.float32)[None, :] - top[:, None]  # [B, size] local index
  inside = (out >= 0) & (out < new_size[:, None])
  ratio = (size / new_size)[:, None]  # input pixels per output pixel, >= 1
  centre = (out + 0.5) * ratio - 0.5  # [B, size] in input pixel coordinates
  support = jnp.maximum(ratio, 1.0) if antialias else jnp.ones_like(ratio)
  source = jnp.arange(size, dtype=jnp.float32)[None, None, :]
  weights = jnp.maximum(0.0, 1.0 - jnp.abs(source - centre[..., None]) / support[..., None])
  weights = weights / jnp.maximum(weights.sum(-1, keepdims=True), 1e-12)
  return jnp.where(inside[..., None], weights, 0.0)


@functools.partial(jax.jit, static_argnames=("antialias",))
def scale(images: jax.Array, factors: jax.Array, *, antialias: bool = True) -> jax.Array:
  """Shrinks each image by its factor and pastes it centred on a zero canvas (scaled MNIST).

  Args:
    images: float ``[B, H, W, C]``.
    factors: ``[B]`` in (0, 1]; the content becomes ``int(H*f) x int(W*f)`` pixels.
    antialias: see :func:`resize_paste_matrix`.

  Returns:
    ``[B, H, W, C]``; factor 1 returns the input exactly.
  """
  factors = jnp.asarray(factors, jnp.float32)
  _check_batch(images, factors, "factors")
  _, height, width, _ = images.shape
  row_matrix = resize_paste_matrix(height, factors, antialias=antialias).astype(images.dtype)
  col_matrix = resize_paste_matrix(width, factors, antialias=antialias).astype(images.dtype)
  return jnp.einsum("bri,bijc,bsj->brsc", row_matrix, images, col_matrix,
                    precision=jax.lax.Precision.HIGHEST)


@jax.jit
def horizontal_flip(images: jax.Array, flags: jax.Array) -> jax.Array:
  """Mirrors the images whose flag is true left-right (along W). ``flags``: bool ``[B]``."""
  flags = jnp.asarray(flags)
  _check_batch(images, flags, "flags")
  return jnp.where(flags[:, None, None, None], images[:, :, ::-1, :], images)


def random_rotation_angles(key: jax.Array, batch: int, *, max_angle_deg: float = 360.0,
                           rotation_group_order: int | None = None) -> jax.Array:
  """Random angles in radians, ``[batch]``.

  Continuous (``rotation_group_order=None``): uniform in ``[0, max_angle_deg]`` (for 360,
  uniform on the circle). Discrete (``rotation_group_order=n``): uniform over the multiples
  ``k * 360/n`` (k = 0..n-1) that are ``<= max_angle_deg``, i.e. the group C_n (or the part
  of it inside the range).
  """
  if not 0.0 < max_angle_deg <= 360.0:
    raise ValueError(f"max_angle_deg: {max_angle_deg} is not accepted; expected (0, 360]")
  if rotation_group_order is None:
    return jax.random.uniform(key, (batch,), jnp.float32, 0.0, math.radians(max_angle_deg))
  if int(rotation_group_order) != rotation_group_order or rotation_group_order < 1:
    raise ValueError(f"rotation_group_order: {rotation_group_order} is not accepted; "
                     "expected a positive integer or None")
  order = int(rotation_group_order)
  step = 360.0 / order
  count = min(order, int(math.floor(max_angle_deg / step + 1e-9)) + 1)
  k = jax.random.randint(key, (batch,), 0, count)
  return k.astype(jnp.float32) * jnp.float32(2.0 * math.pi / order)


__all__ = ["to_float", "normalize", "add_gaussian_noise", "bilinear_sample", "rotate",
           "scale", "resize_paste_matrix", "horizontal_flip", "random_rotation_angles",
           "MNIST_MEAN", "MNIST_STD", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD",
           "CIFAR10_MEAN", "CIFAR10_STD"]
