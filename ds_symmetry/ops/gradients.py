"""Hand-written backward passes for the two hot spots of a training step on a CPU.

Both give JAX's own gradients to float32 rounding (the input gradient of a convolution is even
bit-identical on XLA:CPU), and both were kept because they made a training step faster
(``benchmarks/profile_step.py``, ``docs/benchmarks.md``, "CPU speed"):

* :func:`conv2d_stride1` — a stride-1 2-D convolution whose *input gradient* skips the zero
  rows of the padded gradient. JAX's transpose rule computes the input gradient as one
  convolution of the gradient padded by ``k - 1`` on every side, so every output row near the
  border multiplies up to ``k - 1`` kernel rows by zeros (44% more work than the forward for a
  24 → 20 px layer, 125% for 12 → 8 px). Here the rows whose receptive field lies inside the
  gradient are one convolution, and each of the ``2 (k - 1)`` border rows is a small
  convolution with only the kernel rows that meet the gradient; the pieces are concatenated.
  The weight gradient is JAX's.
* :func:`standardize_fused` — ``(x - mean) / sqrt(var + eps)`` over some axes, whose backward
  is the closed form ``(dy - mean(dy) - y · mean(dy · y)) / sqrt(var + eps)`` (two reductions
  and one elementwise pass) instead of the transpose of every forward operation.

:func:`custom_gradients` turns both off for code traced inside it (then the plain ``lax``
convolution and the autodiff'd standardisation run); tests and benchmarks use it to compare
against JAX's own gradients. By default they are used on the CPU backend only (what they were
measured on); ``DS_SYMMETRY_CUSTOM_GRADIENTS=0`` (or ``1``) in the environment turns them off
(or on) everywhere.

The price: the convolution's input is kept for the backward pass (plain autodiff lets XLA
recompute it from the previous layer's normalisation instead), so a training step's compiled
peak memory grows by one activation per layer (``wscnn``, batch 64: 139 → 161 MiB).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp

def _from_environment() -> bool | None:
  value = os.environ.get("DS_SYMMETRY_CUSTOM_GRADIENTS", "auto").strip().lower()
  if value in ("auto", ""):
    return None
  if value in ("1", "true", "yes", "on"):
    return True
  if value in ("0", "false", "no", "off"):
    return False
  raise ValueError(f"DS_SYMMETRY_CUSTOM_GRADIENTS={value!r}: expected auto, 1 or 0")


# None: decided by the backend when a function is traced (on for XLA:CPU only; GPU and TPU
# convolution libraries handle the padded transposed convolution well, and the split into
# 2 (k - 1) + 1 small convolutions would only add launches there).
_ENABLED = contextvars.ContextVar("ds_symmetry_custom_gradients", default=_from_environment())


def custom_gradients_enabled() -> bool:
  """Whether code traced now uses the hand-written backward passes (default: on the CPU)."""
  enabled = _ENABLED.get()
  if enabled is None:
    return jax.default_backend() == "cpu"
  return enabled


@contextlib.contextmanager
def custom_gradients(enabled: bool):
  """Traces the code inside with (``True``) or without (``False``) the hand-written backward
  passes. It acts when a function is traced: a function jitted and first called inside keeps
  the choice it was compiled with."""
  token = _ENABLED.set(bool(enabled))
  try:
    yield
  finally:
    _ENABLED.reset(token)


# ------------------------------------------------------------------------------ convolution
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel, padding):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                      dimension_numbers=_DIMENSION_NUMBERS)


def _resolve_padding(padding, kernel_shape) -> tuple[tuple[int, int], ...]:
  """``((lo, hi), (lo, hi))`` for 'VALID', 'SAME' or explicit pairs (stride 1)."""
  if isinstance(padding, str):
    if padding.upper() == "VALID":
      return ((0, 0), (0, 0))
    pads = []
    for k in kernel_shape[:2]:  # 'SAME', stride 1: total k - 1, the odd one at the end
      total = k - 1
      pads.append((total // 2, total - total // 2))
    return tuple(pads)
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def _input_grad(g, kernel, padding, in_rows: int):
  """Gradient wrt the input of a stride-1 NHWC/HWIO convolution, without zero kernel rows.

  ``g [B, Ho, Wo, C_out]``; returns ``[B, in_rows, W, C_in]``. In the coordinates of the full
  correlation of ``g`` with the flipped kernel (rows ``0 … Ho + k - 2``), input row ``i`` is row
  ``i + pad_lo``; its kernel taps ``a`` (of the flipped kernel) meet gradient row
  ``y + a - (k - 1)``, which exists for ``a`` in ``[k - 1 - y, Ho + k - 2 - y]``.
  """
  (pad_top, _), (pad_left, pad_right) = padding
  k, kw = kernel.shape[0], kernel.shape[1]
  rows = g.shape[1]
  flipped = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))  # [k, kw, C_out, C_in]
  width_pad = ((0, 0), (kw - 1 - pad_left, kw - 1 - pad_right))
  pieces, interior = [], None
  for y in range(pad_top, pad_top + in_rows):
    lo, hi = max(0, k - 1 - y), min(k - 1, rows + k - 2 - y)
    if hi < lo:  # the row sees no gradient (padding wider than the kernel)
      pieces.append(("zero", y))
      continue
    if lo == 0 and hi == k - 1:  # the whole kernel meets the gradient: part of one conv
      if interior is None:
        interior = [y, y]
        pieces.append(("interior", interior))
      interior[1] = y
      continue
    pieces.append(("border", (y, lo, hi)))
  out = []
  for kind, value in pieces:
    if kind == "interior":
      first, last = value
      out.append(_conv(g[:, first - (k - 1):last + 1], flipped, width_pad))
    elif kind == "border":
      y, lo, hi = value
      out.append(_conv(g[:, y + lo - (k - 1):y + hi - (k - 1) + 1], flipped[lo:hi + 1],
                       width_pad))
    else:
      width = g.shape[2] + kw - 1 - pad_left - pad_right
      out.append(jnp.zeros((g.shape[0], 1, width, kernel.shape[2]), g.dtype))
  return jnp.concatenate(out, axis=1) if len(out) > 1 else out[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_cropped(x, kernel, padding):
  return _conv(x, kernel, padding)


def _conv_cropped_fwd(x, kernel, padding):
  return _conv(x, kernel, padding), (x, kernel)


def _conv_cropped_bwd(padding, residuals, g):
  x, kernel = residuals
  _, weight_vjp = jax.vjp(lambda w: _conv(x, w, padding), kernel)
  (kernel_grad,) = weight_vjp(g)
  input_grad = _input_grad(g, kernel, padding, x.shape[1])
  return input_grad.astype(x.dtype), kernel_grad


_conv_cropped.defvjp(_conv_cropped_fwd, _conv_cropped_bwd)


def conv2d_stride1(x: jnp.ndarray, kernel: jnp.ndarray, padding="VALID") -> jnp.ndarray:
  """Stride-1 NHWC/HWIO cross-correlation ``[B, H, W, C_in] → [B, H', W', C_out]``; padding
  'VALID', 'SAME' or ``((top, bottom), (left, right))``. Same values as
  ``lax.conv_general_dilated``; the input gradient skips zero rows (module docstring)."""
  padding = _resolve_padding(padding, kernel.shape)
  if not custom_gradients_enabled():
    return _conv(x, kernel, padding)
  return _conv_cropped(x, kernel, padding)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, **kwargs):
  """``lax.conv_general_dilated``'s signature (e.g. for ``nnx.Conv(conv_general_dilated=…)``):
  a plain 2-D NHWC/HWIO stride-1 convolution goes through ``ops.conv_paths.convolve`` (by
  default :func:`conv2d_stride1`), anything else straight to ``lax``."""
  simple = (lhs.ndim == 4 and tuple(window_strides) == (1, 1)
            and all(d in (None, 1, (1, 1)) for d in (lhs_dilation, rhs_dilation))
            and feature_group_count == 1 and precision is None
            and kwargs.get("out_sharding") is None
            and kwargs.get("preferred_element_type") is None
            and not (isinstance(padding, str) and padding.upper() not in ("VALID", "SAME"))
            and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
            == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DIMENSION_NUMBERS))
  if simple:
    from ds_symmetry.ops import conv_paths  # pylint: disable=import-outside-toplevel
    return conv_paths.convolve(lhs, rhs, padding)  # the path chosen per piece (conv_paths)
  return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                      rhs_dilation, dimension_numbers, feature_group_count,
                                      precision=precision, **kwargs)


# -------------------------------------------------------------------------- standardisation
def _standardize_plain(x32, axes, epsilon):
  mean = jnp.mean(x32, axis=axes, keepdims=True)
  var = jnp.mean(jnp.square(x32 - mean), axis=axes, keepdims=True)
  return (x32 - mean) * jax.lax.rsqrt(var + epsilon)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _standardize_closed_form(x32, axes, epsilon):
  return _standardize_plain(x32, axes, epsilon)


def _standardize_fwd(x32, axes, epsilon):
  mean = jnp.mean(x32, axis=axes, keepdims=True)
  centred = x32 - mean
  inv_std = jax.lax.rsqrt(jnp.mean(jnp.square(centred), axis=axes, keepdims=True) + epsilon)
  y = centred * inv_std
  return y, (y, inv_std)


def _standardize_bwd(axes, epsilon, residuals, dy):
  del epsilon
  y, inv_std = residuals
  mean_dy = jnp.mean(dy, axis=axes, keepdims=True)
  mean_dy_y = jnp.mean(dy * y, axis=axes, keepdims=True)
  return ((dy - mean_dy - y * mean_dy_y) * inv_std,)


_standardize_closed_form.defvjp(_standardize_fwd, _standardize_bwd)


def standardize_fused(x32: jnp.ndarray, axes: Sequence[int], epsilon: float) -> jnp.ndarray:
  """``(x - mean) / sqrt(var + eps)`` over ``axes`` (float32 in and out), with the closed-form
  backward (module docstring) unless :func:`custom_gradients` is off."""
  axes = tuple(sorted(a % x32.ndim for a in axes))
  if not custom_gradients_enabled():
    return _standardize_plain(x32, axes, epsilon)
  return _standardize_closed_form(x32, axes, float(epsilon))
