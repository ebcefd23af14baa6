"""Other ways of computing a stride-1 2-D convolution and its two gradients, and which one runs.

Every convolution of the models (``ops.conv2d``: the lifting, group and weight-sharing layers;
the plain CNN's ``nnx.Conv`` through ``ops.gradients.conv_general_dilated``) is a stride-1
NHWC/HWIO cross-correlation ``x [B, H, W, C_in]``, ``kernel [kh, kw, C_in, C_out]`` →
``y [B, Ho, Wo, C_out]`` with ``Ho = H + top + bottom − kh + 1`` (likewise ``Wo``). A training
step computes three pieces of each: the forward, the input gradient ``dx [B, H, W, C_in]`` and
the weight gradient ``dw [kh, kw, C_in, C_out]`` from the output gradient ``g [B, Ho, Wo,
C_out]``. Each piece can be computed by one of these *paths*:

* ``"xla"`` — XLA's convolution: what ran before this module existed
  (``ops.gradients.conv2d_stride1``; its input gradient skips the zero rows of the padded
  gradient while the hand-written gradients are on, ``ops.gradients.custom_gradients``).
* ``"im2col"`` — one big matrix product. Forward: the patches ``P [B·Ho·Wo, kh·kw·C_in]``
  (``kh·kw`` shifted slices of the padded input, concatenated along channels, order
  ``(a, b, c)``) times ``W [kh·kw·C_in, C_out]``; weight gradient ``Pᵀ g`` (one dot); input
  gradient by col2im: ``g Wᵀ [B·Ho·Wo, kh·kw·C_in]``, then the ``kh·kw`` slices overlap-added
  at their shifts.
* ``"rows"`` — a loop over the ``kh`` kernel rows with patches unrolled along the width only:
  ``U [B, Hp, Wo, kw·C_in]`` (``Hp`` the padded height) is built once, ``kw``× the input
  instead of ``kh·kw``×; kernel row ``a`` multiplies the rows ``a … a + Ho − 1`` of ``U``
  (``kh`` dots). Weight gradient: ``kh`` dots ``U[a]ᵀ g``; input gradient: ``kh`` dots ``g
  W[a]ᵀ`` overlap-added along the height, then along the width.
* ``"winograd"`` — Winograd's minimal filtering ``F(m, r)`` on 8×8 input tiles
  (``ops.winograd``): for a 5×5 kernel 64 products per 16 outputs instead of 400, as ``64``
  batched matrix products over the channels. Its gradients are JAX's transposes of the same
  algorithm (one joint pass when both are ``winograd``). Float32 error about 10× a direct
  convolution's (``ops.winograd``; ``tests/test_conv_paths.py`` bounds it at 5e-5 of the
  largest magnitude). Kernels outside 2…7 taps along an axis take ``xla`` instead.

The three pieces are chosen independently (:class:`ConvPath`). Which path runs is decided when
a function is traced, in this order: :func:`conv_path` (a context manager, for tests and
benchmarks), the environment variable ``DS_SYMMETRY_CONV_PATH``, and for ``auto`` (the
default) :func:`choose_conv_path` — the one place that picks a path from the CPU's features
and the convolution's shape. Today it picks ``winograd`` on AVX-512 CPUs for the 5×5 layers
with at least 64 input channels and ``xla`` everywhere else (the measurements are above
:func:`choose_conv_path`).

``DS_SYMMETRY_CONV_PATH`` holds ``auto``, ``xla``, ``im2col``, ``rows`` or ``winograd`` (one path
for every piece), or pieces named one by one, e.g.
``forward=im2col,input_grad=xla,weight_grad=rows`` (a piece left out, or ``auto``, follows
:func:`choose_conv_path`). Every path gives ``lax.conv_general_dilated``'s values and gradients
to float32 rounding (``winograd``: to its larger float32 error; ``tests/test_conv_paths.py``).
The im2col and rows paths keep only the
input and the kernel for the backward pass (the patches are built again there), and compute in
the operands' dtype with float32 accumulation.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import pathlib
from typing import NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp

from ds_symmetry.ops import gradients, winograd

ENV = "DS_SYMMETRY_CONV_PATH"
"""The environment variable that picks the convolution path (module docstring)."""

PATHS = ("xla", "im2col", "rows", "winograd")
"""The paths; each piece (forward, input gradient, weight gradient) accepts every one."""

PIECES = ("forward", "input_grad", "weight_grad")
"""The pieces of a convolution that a :class:`ConvPath` names a path for."""


class ConvPath(NamedTuple):
  """The path of each piece of a convolution, one of :data:`PATHS` (``None``: ``auto``)."""
  forward: Optional[str] = None
  input_grad: Optional[str] = None
  weight_grad: Optional[str] = None

  def describe(self) -> str:
    """``"im2col"`` when every piece has the same path, else ``"forward=…,input_grad=…,…"``."""
    names = ["auto" if p is None else p for p in self]
    if len(set(names)) == 1:
      return names[0]
    return ",".join(f"{piece}={name}" for piece, name in zip(PIECES, names))


AUTO = ConvPath()
"""Every piece decided by :func:`choose_conv_path`."""

XLA = ConvPath("xla", "xla", "xla")
"""XLA's convolutions for every piece: the path that ran before this module existed."""

WINOGRAD = ConvPath("winograd", "winograd", "winograd")
"""Winograd's minimal filtering for every piece (``ops.winograd``)."""


def _expected(name: str) -> str:
  return (f"{name}: expected auto, {', '.join(PATHS[:-1])} or {PATHS[-1]}, or pieces such as "
          f"'forward=im2col,input_grad=xla,weight_grad=rows' (pieces: {', '.join(PIECES)}; "
          f"paths: auto, {', '.join(PATHS)})")


def parse_conv_path(value: Optional[str], name: str = ENV) -> ConvPath:
  """Reads a path spec: ``auto`` / ``xla`` / ``im2col`` / ``rows`` / ``winograd`` (every piece) or
  ``piece=path`` pairs separated by commas (pieces left out: ``auto``).

  Args:
    value: the spec; ``None`` or empty means ``auto``.
    name: what the message of an error calls it (default: the environment variable).

  Returns:
    a :class:`ConvPath`, with ``None`` for the pieces left to ``auto``.

  Raises:
    ValueError: one line naming ``name``, the value and the accepted values.
  """
  text = (value or "").strip().lower()
  if text in ("", "auto"):
    return AUTO
  if text in PATHS:
    return ConvPath(text, text, text)
  chosen = {}
  for item in text.split(","):
    piece, sep, path = (part.strip() for part in item.partition("="))
    piece = piece.replace("-", "_")
    if (not sep or piece not in PIECES or piece in chosen
        or path not in PATHS + ("auto",)):
      raise ValueError(_expected(f"{name}={value!r}"))
    chosen[piece] = None if path == "auto" else path
  return ConvPath(**chosen)


def _as_path(path: Union[str, ConvPath, None], name: str) -> ConvPath:
  if path is None or isinstance(path, str):
    return parse_conv_path(path, name)
  path = ConvPath(*path)
  if any(p is not None and p not in PATHS for p in path):
    raise ValueError(_expected(f"{name}={tuple(path)!r}"))
  return path


# ----------------------------------------------------------------- which path runs
@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
  """The feature flags of the first processor in Linux's ``/proc/cpuinfo`` (``flags`` on x86,
  ``Features`` on ARM), e.g. ``{"avx2", "avx512f", "avx512_bf16", …}``; empty where there is
  no such file."""
  try:
    text = pathlib.Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
  except OSError:
    return frozenset()
  for line in text.splitlines():
    key, _, value = line.partition(":")
    if key.strip().lower() in ("flags", "features"):
      return frozenset(value.split())
  return frozenset()


# What the choice rests on (``python -m benchmarks.run conv_paths``, batch 64, the MNIST models'
# 5×5 VALID layers, an idle 2-core AMD EPYC with avx512f/bw/vl/vnni/bf16; docs/benchmarks.md).
# Timed alone, Winograd's F(4, 5) beats XLA's convolution on some pieces and loses on others
# (0.6–1.6× per piece on the 64/128-channel layers, 3–9× slower on the one-channel first
# layer). What decides is the whole training step, where the forward and the backward share
# the transforms: with winograd on the 5×5 layers of 64 or more input channels the cnn step
# took 0.95×, the gcnn 0.69×, the wscnn 0.68× the time of XLA's convolution everywhere (and
# winograd on the first layer too was slower again), while the identification recipe's
# selector (plain CNN backbone, 16 and 32 channels) with winograd took 1.71× and 1.48× XLA's
# time: at those widths the transforms cost more than the products save. Other kernel sizes
# lost in a probe on the same CPU while another job shared its cores (3×3 'SAME' at 32 and 128
# channels: F(6, 3) 1.2–3.1× XLA's forward; 7×7 at 32 channels: F(2, 7) 2.7–2.9×), and no
# benchmark measured them alone, so auto takes winograd for 5×5 kernels only.
# Earlier, before the winograd path: rows won some pieces timed alone (the one-channel first
# layer, 8×8 outputs) but a whole step with them was slower, so they are not chosen; im2col
# never won. On an AVX2 CPU no path was measured (issue 26), so there auto stays XLA's
# convolution; GPUs and TPUs keep XLA's (their convolution libraries choose their own
# algorithms).
WINOGRAD_MIN_CHANNELS = 64
"""``auto`` takes ``winograd`` on an AVX-512 CPU for convolutions with at least this many
input channels (and a kernel in :data:`WINOGRAD_KERNELS`): the measured wins (64 and 128
channels; 16 and 32 lost in a whole step)."""
WINOGRAD_KERNELS = ((5, 5),)
"""The kernel sizes ``(kh, kw)`` for which ``auto`` takes ``winograd`` (where it won)."""


def _measured_cpu(flags: frozenset, backend: str) -> bool:
  """The CPU kind the winograd choice was measured on: JAX's CPU backend with AVX-512."""
  return backend == "cpu" and "avx512f" in flags


def choose_conv_path(flags: Optional[frozenset] = None, backend: Optional[str] = None,
                     x_shape: Optional[Sequence[int]] = None,
                     kernel_shape: Optional[Sequence[int]] = None,
                     padding=None) -> ConvPath:
  """The path ``auto`` takes on this machine for one convolution: the one place where it is
  decided (from the measurements above).

  Args:
    flags: CPU feature flags (default: :func:`cpu_flags`).
    backend: JAX's backend (default: ``jax.default_backend()``).
    x_shape: ``[B, H, W, C_in]`` of the convolution, or None (then: :data:`XLA`).
    kernel_shape: ``[kh, kw, C_in, C_out]``, or None (then: :data:`XLA`).
    padding: the resolved ``((top, bottom), (left, right))`` padding (None: ``VALID``); the
      choice does not depend on it.

  Returns:
    a :class:`ConvPath` naming a path for every piece: ``winograd`` for every piece on an
    AVX-512 CPU when the kernel is 5×5 (:data:`WINOGRAD_KERNELS`) with at least
    :data:`WINOGRAD_MIN_CHANNELS` input channels; :data:`XLA` otherwise.
  """
  del padding
  flags = cpu_flags() if flags is None else flags
  backend = jax.default_backend() if backend is None else backend
  if (_measured_cpu(flags, backend) and x_shape is not None and kernel_shape is not None
      and tuple(kernel_shape[:2]) in WINOGRAD_KERNELS
      and kernel_shape[2] >= WINOGRAD_MIN_CHANNELS):
    return WINOGRAD
  return XLA


def auto_description(flags: Optional[frozenset] = None, backend: Optional[str] = None) -> str:
  """What ``auto`` does on this machine, in words (recorded in a run's provenance)."""
  flags = cpu_flags() if flags is None else flags
  backend = jax.default_backend() if backend is None else backend
  if _measured_cpu(flags, backend):
    sizes = ", ".join(f"{kh}x{kw}" for kh, kw in WINOGRAD_KERNELS)
    return (f"winograd for {sizes} kernels with at least {WINOGRAD_MIN_CHANNELS} input "
            f"channels, else xla")
  return "xla"


_FORCED = contextvars.ContextVar("ds_symmetry_conv_path", default=None)


def requested_conv_path() -> ConvPath:
  """The path asked for, before ``auto`` is resolved: the innermost :func:`conv_path`, else
  ``DS_SYMMETRY_CONV_PATH`` (read on every call; a bad value raises ValueError)."""
  forced = _FORCED.get()
  if forced is not None:
    return forced
  return parse_conv_path(os.environ.get(ENV))


def current_conv_path() -> ConvPath:
  """The path code traced now uses, every piece named (``auto`` pieces resolved by
  :func:`choose_conv_path`)."""
  requested = requested_conv_path()
  if None not in requested:
    return requested
  chosen = choose_conv_path()
  return ConvPath(*(c if r is None else r for r, c in zip(requested, chosen)))


@contextlib.contextmanager
def conv_path(path: Union[str, ConvPath, None]):
  """Traces the code inside with convolution path ``path`` (a spec as in
  :func:`parse_conv_path`, or a :class:`ConvPath`; ``"auto"`` / ``None``: the automatic
  choice, whatever the environment says). It acts when a function is traced: a function
  jitted and first called outside keeps the path it was compiled with."""
  token = _FORCED.set(_as_path(path, "conv_path"))
  try:
    yield
  finally:
    _FORCED.reset(token)


# ----------------------------------------------------------------- the formulations
def _pad_config(padding):
  (top, bottom), (left, right) = padding
  return [(0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)]


def _pad(x, padding):
  """Zero-pads (or, for negative amounts, crops) the two spatial axes of NHWC ``x``."""
  if all(v == 0 for pair in padding for v in pair):
    return x
  return jax.lax.pad(x, jnp.zeros((), x.dtype), _pad_config(padding))


def _unpad(dx_padded, padding):
  """The transpose of :func:`_pad`: crops what was padded (pads back what was cropped)."""
  return _pad(dx_padded, tuple((-lo, -hi) for lo, hi in padding))


def _dot(a, b, contract_a, contract_b):
  """``lax.dot_general`` without batch axes, accumulated in at least float32, returned in
  ``a``'s dtype."""
  accumulate = jnp.promote_types(a.dtype, jnp.float32)
  out = jax.lax.dot_general(a, b, ((contract_a, contract_b), ((), ())),
                            preferred_element_type=accumulate)
  return out.astype(a.dtype)


def _out_size(x_shape, kernel_shape, padding):
  (top, bottom), (left, right) = padding
  return (x_shape[1] + top + bottom - kernel_shape[0] + 1,
          x_shape[2] + left + right - kernel_shape[1] + 1)


def im2col_patches(x: jnp.ndarray, kernel_shape, padding) -> jnp.ndarray:
  """The patches of a stride-1 convolution, ``[B, Ho, Wo, kh·kw·C_in]``.

  Args:
    x: ``[B, H, W, C_in]``.
    kernel_shape: ``(kh, kw, …)``.
    padding: ``((top, bottom), (left, right))``.

  Returns:
    ``P`` with ``P[n, i, j, (a·kw + b)·C_in + c] = x_padded[n, i + a, j + b, c]``, so that
    ``P @ kernel.reshape(kh·kw·C_in, C_out)`` is the convolution.
  """
  kh, kw = kernel_shape[0], kernel_shape[1]
  ho, wo = _out_size(x.shape, kernel_shape, padding)
  xp = _pad(x, padding)
  return jnp.concatenate([xp[:, a:a + ho, b:b + wo, :] for a in range(kh) for b in range(kw)],
                         axis=-1)


def width_patches(x: jnp.ndarray, kernel_shape, padding) -> jnp.ndarray:
  """The patches unrolled along the width only, ``[B, Hp, Wo, kw·C_in]`` (``Hp`` = padded
  height), with ``U[n, r, j, b·C_in + c] = x_padded[n, r, j + b, c]``: kernel row ``a`` of the
  convolution is ``U[:, a:a + Ho] @ kernel[a].reshape(kw·C_in, C_out)``."""
  kw = kernel_shape[1]
  _, wo = _out_size(x.shape, kernel_shape, padding)
  xp = _pad(x, padding)
  return jnp.concatenate([xp[:, :, b:b + wo, :] for b in range(kw)], axis=-1)


def conv_im2col(x: jnp.ndarray, kernel: jnp.ndarray, padding) -> jnp.ndarray:
  """Forward by one dot: ``x [B, H, W, C_in]``, ``kernel [kh, kw, C_in, C_out]`` →
  ``[B, Ho, Wo, C_out]`` = :func:`im2col_patches` ``@ kernel.reshape(kh·kw·C_in, C_out)``."""
  patches = im2col_patches(x, kernel.shape, padding)
  return _dot(patches, kernel.reshape(-1, kernel.shape[-1]), (3,), (0,))


def conv_rows(x: jnp.ndarray, kernel: jnp.ndarray, padding) -> jnp.ndarray:
  """Forward by ``kh`` dots of width-unrolled patches (:func:`width_patches`):
  ``x [B, H, W, C_in]``, ``kernel [kh, kw, C_in, C_out]`` → ``[B, Ho, Wo, C_out]``."""
  kh, kw, c_in, c_out = kernel.shape
  ho, _ = _out_size(x.shape, kernel.shape, padding)
  unrolled = width_patches(x, kernel.shape, padding)
  out = None
  for a in range(kh):
    term = _dot(unrolled[:, a:a + ho], kernel[a].reshape(kw * c_in, c_out), (3,), (0,))
    out = term if out is None else out + term
  return out


def weight_grad_im2col(x: jnp.ndarray, g: jnp.ndarray, kernel_shape, padding) -> jnp.ndarray:
  """Weight gradient by one dot, ``Pᵀ g``: ``x [B, H, W, C_in]``, ``g [B, Ho, Wo, C_out]`` →
  ``[kh, kw, C_in, C_out]``."""
  patches = im2col_patches(x, kernel_shape, padding)
  return _dot(patches, g, (0, 1, 2), (0, 1, 2)).reshape(kernel_shape)


def weight_grad_rows(x: jnp.ndarray, g: jnp.ndarray, kernel_shape, padding) -> jnp.ndarray:
  """Weight gradient by ``kh`` dots, kernel row ``a`` = ``U[:, a:a + Ho]ᵀ g``
  (:func:`width_patches`): ``x [B, H, W, C_in]``, ``g [B, Ho, Wo, C_out]`` →
  ``[kh, kw, C_in, C_out]``."""
  kh = kernel_shape[0]
  ho = g.shape[1]
  unrolled = width_patches(x, kernel_shape, padding)
  rows = [_dot(unrolled[:, a:a + ho], g, (0, 1, 2), (0, 1, 2)) for a in range(kh)]
  return jnp.stack(rows).reshape(kernel_shape)


def _overlap_add(pieces, axis: int, size: int):
  """``Σ_s pad(pieces[s], s before, size − len − s after)`` along ``axis``: the transpose of
  taking the slices ``[s : s + len]`` of an axis of length ``size``."""
  out = None
  for shift, piece in enumerate(pieces):
    config = [(0, 0, 0)] * piece.ndim
    config[axis] = (shift, size - piece.shape[axis] - shift, 0)
    padded = jax.lax.pad(piece, jnp.zeros((), piece.dtype), config)
    out = padded if out is None else out + padded
  return out


def input_grad_im2col(g: jnp.ndarray, kernel: jnp.ndarray, padding, input_shape) -> jnp.ndarray:
  """Input gradient by col2im: one dot ``g Wᵀ [B, Ho, Wo, kh·kw·C_in]``, then the ``kh·kw``
  slices overlap-added at their shifts (along the width, then the height) and the padding
  cropped. ``g [B, Ho, Wo, C_out]``, ``kernel [kh, kw, C_in, C_out]`` → ``input_shape``
  ``(B, H, W, C_in)``."""
  kh, kw, c_in, c_out = kernel.shape
  (top, bottom), (left, right) = padding
  hp, wp = input_shape[1] + top + bottom, input_shape[2] + left + right
  columns = _dot(g, kernel.reshape(-1, c_out), (3,), (1,))          # [B, Ho, Wo, kh·kw·C_in]
  columns = columns.reshape(*g.shape[:3], kh, kw, c_in)
  rows = [_overlap_add([columns[:, :, :, a, b] for b in range(kw)], 2, wp) for a in range(kh)]
  return _unpad(_overlap_add(rows, 1, hp), padding)


def input_grad_rows(g: jnp.ndarray, kernel: jnp.ndarray, padding, input_shape) -> jnp.ndarray:
  """Input gradient by ``kh`` dots ``g W[a]ᵀ [B, Ho, Wo, kw·C_in]``, overlap-added along the
  height into ``dU [B, Hp, Wo, kw·C_in]`` (the transpose of :func:`width_patches`), then
  along the width, and the padding cropped. ``g [B, Ho, Wo, C_out]``, ``kernel [kh, kw, C_in,
  C_out]`` → ``input_shape`` ``(B, H, W, C_in)``."""
  kh, kw, c_in, c_out = kernel.shape
  (top, bottom), (left, right) = padding
  hp, wp = input_shape[1] + top + bottom, input_shape[2] + left + right
  per_row = [_dot(g, kernel[a].reshape(kw * c_in, c_out), (3,), (1,)) for a in range(kh)]
  unrolled = _overlap_add(per_row, 1, hp)                            # [B, Hp, Wo, kw·C_in]
  columns = [unrolled[..., b * c_in:(b + 1) * c_in] for b in range(kw)]
  return _unpad(_overlap_add(columns, 2, wp), padding)


def _forward(x, kernel, padding, path):
  if path == "winograd":
    return winograd.conv_winograd(x, kernel, padding)
  if path == "im2col":
    return conv_im2col(x, kernel, padding)
  if path == "rows":
    return conv_rows(x, kernel, padding)
  return gradients._conv(x, kernel, padding)  # pylint: disable=protected-access


def _input_grad(g, kernel, padding, x_shape, x_dtype, path, cropped):
  if path == "winograd":
    zeros = jnp.zeros(x_shape, x_dtype)
    _, vjp = jax.vjp(lambda x: winograd.conv_winograd(x, kernel, padding), zeros)
    (dx,) = vjp(g)
  elif path == "im2col":
    dx = input_grad_im2col(g, kernel, padding, x_shape)
  elif path == "rows":
    dx = input_grad_rows(g, kernel, padding, x_shape)
  elif cropped:  # XLA's convolution without the zero rows (ops.gradients)
    dx = gradients._input_grad(g, kernel, padding, x_shape[1])  # pylint: disable=protected-access
  else:          # JAX's own transpose rule
    zeros = jnp.zeros(x_shape, x_dtype)
    _, vjp = jax.vjp(lambda x: gradients._conv(x, kernel, padding), zeros)  # pylint: disable=protected-access
    (dx,) = vjp(g)
  return dx.astype(x_dtype)


def _weight_grad(x, g, kernel, padding, path):
  if path == "winograd":
    _, vjp = jax.vjp(lambda w: winograd.conv_winograd(x, w, padding), kernel)
    (dw,) = vjp(g)
  elif path == "im2col":
    dw = weight_grad_im2col(x, g, kernel.shape, padding)
  elif path == "rows":
    dw = weight_grad_rows(x, g, kernel.shape, padding)
  else:
    _, vjp = jax.vjp(lambda w: gradients._conv(x, w, padding), kernel)  # pylint: disable=protected-access
    (dw,) = vjp(g)
  return dw.astype(kernel.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_by_path(x, kernel, padding, path, cropped):
  del cropped
  return _forward(x, kernel, padding, path.forward)


def _conv_by_path_fwd(x, kernel, padding, path, cropped):
  del cropped
  return _forward(x, kernel, padding, path.forward), (x, kernel)


def _conv_by_path_bwd(padding, path, cropped, residuals, g):
  x, kernel = residuals
  if path.input_grad == path.weight_grad == "winograd":  # one pass: g's transform is shared
    _, vjp = jax.vjp(lambda x, w: winograd.conv_winograd(x, w, padding), x, kernel)
    dx, dw = vjp(g)
    return dx.astype(x.dtype), dw.astype(kernel.dtype)
  return (_input_grad(g, kernel, padding, x.shape, x.dtype, path.input_grad, cropped),
          _weight_grad(x, g, kernel, padding, path.weight_grad))


_conv_by_path.defvjp(_conv_by_path_fwd, _conv_by_path_bwd)


def convolve(x: jnp.ndarray, kernel: jnp.ndarray, padding="VALID",
             path: Union[str, ConvPath, None] = None) -> jnp.ndarray:
  """Stride-1 NHWC/HWIO cross-correlation ``x [B, H, W, C_in]``, ``kernel [kh, kw, C_in,
  C_out]`` → ``[B, Ho, Wo, C_out]`` by the path of each piece; ``lax.conv_general_dilated``'s
  values.

  Args:
    x: the input.
    kernel: the kernel (same dtype as ``x``).
    padding: 'VALID', 'SAME' or ``((top, bottom), (left, right))``.
    path: a spec or :class:`ConvPath`; default (``None``): :func:`current_conv_path`. Pieces
      left ``auto`` follow :func:`choose_conv_path`.

  Returns:
    the convolution; when every piece is ``xla`` it is exactly
    ``ops.gradients.conv2d_stride1`` (what ran before the other paths existed).
  """
  padding = gradients._resolve_padding(padding, kernel.shape)  # pylint: disable=protected-access
  requested = requested_conv_path() if path is None else _as_path(path, "path")
  auto = (choose_conv_path(x_shape=x.shape, kernel_shape=kernel.shape, padding=padding)
          if None in requested else XLA)
  chosen = ConvPath(*(a if r is None else r for r, a in zip(requested, auto)))
  if not winograd.supports(kernel.shape):  # kernels the tiles cannot take: XLA's convolution
    chosen = ConvPath(*("xla" if p == "winograd" else p for p in chosen))
  if chosen == XLA:
    return gradients.conv2d_stride1(x, kernel, padding)
  return _conv_by_path(x, kernel, padding, chosen, gradients.custom_gradients_enabled())
