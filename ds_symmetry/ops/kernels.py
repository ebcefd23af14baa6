"""Kernel stacks: one convolution kernel holding every transformed copy of a canonical kernel.

This is the heart of the method (paper Eq. 7 with ``P -> R``): each representation matrix
``R[g]`` (exact permutation or learned doubly stochastic) acts on the flattened canonical
kernel, ``K_g = R[g] · vec(θ)``, and all ``G`` copies go into one ordinary convolution.

Layout (written down once, here):

* Images are NHWC. Feature maps with a group axis are ``[B, H, W, C, G]``: channel major,
  group element minor. Reshaping to ``[B, H, W, C·G]`` gives convolution channel
  ``c·G + g``, which is the reference code's (channel major, element minor) order.
* Kernels are HWIO. A lifting kernel is ``[k, k, C_in, C_out·G]`` (output channel ``o·G+g``);
  a group kernel is ``[k, k, C_in·G, C_out·G]`` (input channel ``i·G + g_in``).
* Canonical weights keep the reference's shapes: lifting ``[C_out, C_in, k²]``; group
  convolution ``[C_out, C_in, G·k²]`` flattened as ``(g_in, y, x)``.

Equivariance is exact with exact representations (``ops.groups``) for odd kernels, or with
'VALID' padding on images whose size keeps the rotation centre on the grid after each layer;
'SAME' padding with an even kernel shifts the centre by half a pixel and breaks it.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp

from ds_symmetry.ops import conv_paths

_PADDINGS = ("VALID", "SAME")
_POOLS = ("mean", "max")


def _kernel_size_from(d: int, name: str, value) -> int:
  k = math.isqrt(d)
  if k * k != d:
    raise ValueError(f"{name} must act on a flattened k×k kernel (a square size); "
                     f"got size {d} from shape {value}")
  return k


def _check_reps(reps, name="reps"):
  if reps.ndim != 3 or reps.shape[1] != reps.shape[2]:
    raise ValueError(f"{name} must have shape [G, d, d]; got {tuple(reps.shape)}")


def lift_kernels(reps: jnp.ndarray, weight: jnp.ndarray) -> jnp.ndarray:
  """Builds the lifting kernel stack.

  Args:
    reps: ``[G, k², k²]`` representation stack (rows: output kernel position).
    weight: ``[C_out, C_in, k²]`` canonical kernels, flattened row-major.

  Returns:
    HWIO kernel ``[k, k, C_in, C_out·G]`` with
    ``out[y, x, i, o·G+g] = Σ_m reps[g, y·k+x, m] · weight[o, i, m]``.
  """
  _check_reps(reps)
  if weight.ndim != 3 or weight.shape[-1] != reps.shape[-1]:
    raise ValueError(f"weight must have shape [C_out, C_in, {reps.shape[-1]}] to match reps "
                     f"{tuple(reps.shape)}; got {tuple(weight.shape)}")
  k = _kernel_size_from(reps.shape[-1], "reps", tuple(reps.shape))
  group, (c_out, c_in, _) = reps.shape[0], weight.shape
  stack = jnp.einsum("gnm,oim->niog", reps.astype(weight.dtype), weight)
  return stack.reshape(k, k, c_in, c_out * group)


def group_kernels(reps: jnp.ndarray, weight: jnp.ndarray) -> jnp.ndarray:
  """Builds the group-convolution kernel stack.

  Args:
    reps: ``[G, G·k², G·k²]``; acts jointly on (input element, y, x).
    weight: ``[C_out, C_in, G·k²]`` canonical kernels flattened as ``(g_in, y, x)``.

  Returns:
    HWIO kernel ``[k, k, C_in·G, C_out·G]`` with
    ``out[y, x, i·G+h, o·G+g] = Σ_m reps[g, (h, y, x), m] · weight[o, i, m]``.
  """
  _check_reps(reps)
  group, d = reps.shape[0], reps.shape[-1]
  if d % group:
    raise ValueError(f"reps of a group convolution must have shape [G, G·k², G·k²]; got "
                     f"{tuple(reps.shape)} (size {d} is not a multiple of G={group})")
  k = _kernel_size_from(d // group, "reps (per group element)", tuple(reps.shape))
  if weight.ndim != 3 or weight.shape[-1] != d:
    raise ValueError(f"weight must have shape [C_out, C_in, {d}] to match reps "
                     f"{tuple(reps.shape)}; got {tuple(weight.shape)}")
  c_out, c_in, _ = weight.shape
  stack = jnp.einsum("gnm,oim->niog", reps.astype(weight.dtype), weight)
  stack = stack.reshape(group, k, k, c_in, c_out * group)           # n = (h, y, x)
  stack = jnp.transpose(stack, (1, 2, 3, 0, 4))                      # [k, k, C_in, G, C_out·G]
  return stack.reshape(k, k, c_in * group, c_out * group)


def _check_padding(padding):
  if isinstance(padding, str):
    if padding.upper() not in _PADDINGS:
      raise ValueError(f"padding must be one of {_PADDINGS} or an int; got {padding!r}")
    return padding.upper()
  if isinstance(padding, int) and padding >= 0:
    return [(padding, padding), (padding, padding)]
  raise ValueError(f"padding must be one of {_PADDINGS} or a non-negative int; got {padding!r}")


def conv2d(x: jnp.ndarray, kernel: jnp.ndarray, padding="VALID",
           compute_dtype: Optional[jnp.dtype] = None) -> jnp.ndarray:
  """Plain NHWC/HWIO cross-correlation, stride 1. ``x [B,H,W,C_in]`` → ``[B,H',W',C_out]``.

  ``compute_dtype`` (e.g. ``jnp.bfloat16``) casts both operands; the result is returned in
  ``x``'s dtype.
  """
  out_dtype = x.dtype
  if compute_dtype is not None:
    x, kernel = x.astype(compute_dtype), kernel.astype(compute_dtype)
  # The values of lax.conv_general_dilated, by the path ops.conv_paths picks for each piece
  # (default: XLA's convolution, whose input gradient skips the zero rows XLA's transposed
  # convolution would multiply, ops.gradients).
  y = conv_paths.convolve(x, kernel, _check_padding(padding))
  return y.astype(out_dtype)


def _unflatten_group_axis(y, c_out: int, group: int, bias):
  """``[B, H, W, C_out·G]`` → ``[B, H, W, C_out, G]``, plus a bias ``[C_out]`` shared over G."""
  y = y.reshape(*y.shape[:3], c_out, group)
  return y if bias is None else y + bias[:, None]


def lift_conv(x: jnp.ndarray, reps: jnp.ndarray, weight: jnp.ndarray,
              bias: Optional[jnp.ndarray] = None, padding="VALID",
              compute_dtype=None) -> jnp.ndarray:
  """Lifting convolution: ``x [B, H, W, C_in]`` → ``[B, H', W', C_out, G]``.

  ``bias`` ``[C_out]`` is shared along the group axis.
  """
  if x.ndim != 4:
    raise ValueError(f"x must have shape [B, H, W, C_in]; got {tuple(x.shape)}")
  if x.shape[-1] != weight.shape[1]:
    raise ValueError(f"x has {x.shape[-1]} channels but weight {tuple(weight.shape)} expects "
                     f"C_in={weight.shape[1]}")
  y = conv2d(x, lift_kernels(reps, weight), padding, compute_dtype)
  return _unflatten_group_axis(y, weight.shape[0], reps.shape[0], bias)


def group_conv(x: jnp.ndarray, reps: jnp.ndarray, weight: jnp.ndarray,
               bias: Optional[jnp.ndarray] = None, padding="VALID",
               compute_dtype=None) -> jnp.ndarray:
  """Group convolution: ``x [B, H, W, C_in, G]`` → ``[B, H', W', C_out, G]``.

  ``bias`` ``[C_out]`` is shared along the group axis.
  """
  if x.ndim != 5:
    raise ValueError(f"x must have shape [B, H, W, C_in, G]; got {tuple(x.shape)}")
  group = reps.shape[0]
  if x.shape[-1] != group or x.shape[-2] != weight.shape[1]:
    raise ValueError(f"x {tuple(x.shape)} must be [B, H, W, C_in={weight.shape[1]}, "
                     f"G={group}] to match weight {tuple(weight.shape)} and reps "
                     f"{tuple(reps.shape)}")
  y = conv2d(x.reshape(*x.shape[:3], -1), group_kernels(reps, weight), padding, compute_dtype)
  return _unflatten_group_axis(y, weight.shape[0], group, bias)


def group_pool(x: jnp.ndarray, mode: str = "mean") -> jnp.ndarray:
  """Pools the group axis: ``[B, H, W, C, G]`` → ``[B, H, W, C]`` (mean or max)."""
  if mode not in _POOLS:
    raise ValueError(f"mode must be one of {_POOLS}; got {mode!r}")
  return jnp.mean(x, axis=-1) if mode == "mean" else jnp.max(x, axis=-1)


# ------------------------------------------------------------------ 1-D, 2-D and 3-D grids
# The same construction on a grid of any rank D in {1, 2, 3}: a kernel on the grid (k,)*D is
# flattened row-major to k^D values, and the stack is applied by one convolution of rank D.
# Layouts: signals NWC / kernels WIO (D = 1), NHWC / HWIO (D = 2), NDHWC / DHWIO (D = 3);
# feature maps with a group axis are [B, *grid, C, G]. For D = 2 these functions give exactly
# what lift_kernels, group_kernels, lift_conv and group_conv give.

_DIMENSION_NUMBERS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"),
                      3: ("NDHWC", "DHWIO", "NDHWC")}


def check_spatial_dims(spatial_dims) -> int:
  """Returns ``spatial_dims`` if it is 1, 2 or 3; raises ValueError otherwise."""
  if isinstance(spatial_dims, bool) or spatial_dims not in _DIMENSION_NUMBERS:
    raise ValueError(f"spatial_dims must be 1, 2 or 3; got {spatial_dims!r}")
  return int(spatial_dims)


def _grid_side(d: int, spatial_dims: int, name: str, value) -> int:
  k = round(d ** (1.0 / spatial_dims))
  if k ** spatial_dims != d:
    raise ValueError(f"{name} must act on a flattened kernel of {spatial_dims}-D grid "
                     f"(k,)*{spatial_dims} (size k^{spatial_dims}); got size {d} from shape "
                     f"{value}")
  return k


def lift_kernels_nd(reps: jnp.ndarray, weight: jnp.ndarray, spatial_dims: int) -> jnp.ndarray:
  """Lifting kernel stack on a ``spatial_dims``-D grid.

  Args:
    reps: ``[G, k^D, k^D]`` representation stack.
    weight: ``[C_out, C_in, k^D]`` canonical kernels, flattened row-major.
    spatial_dims: D.

  Returns:
    kernel ``[k, …, k, C_in, C_out·G]`` (D spatial axes) with
    ``out[p, i, o·G+g] = Σ_m reps[g, vec(p), m] · weight[o, i, m]``.
  """
  spatial_dims = check_spatial_dims(spatial_dims)
  _check_reps(reps)
  if weight.ndim != 3 or weight.shape[-1] != reps.shape[-1]:
    raise ValueError(f"weight must have shape [C_out, C_in, {reps.shape[-1]}] to match reps "
                     f"{tuple(reps.shape)}; got {tuple(weight.shape)}")
  k = _grid_side(reps.shape[-1], spatial_dims, "reps", tuple(reps.shape))
  group, (c_out, c_in, _) = reps.shape[0], weight.shape
  stack = jnp.einsum("gnm,oim->niog", reps.astype(weight.dtype), weight)
  return stack.reshape(*(k,) * spatial_dims, c_in, c_out * group)


def group_kernels_nd(reps: jnp.ndarray, weight: jnp.ndarray, spatial_dims: int) -> jnp.ndarray:
  """Group-convolution kernel stack on a ``spatial_dims``-D grid.

  Args:
    reps: ``[G, G·k^D, G·k^D]``; acts jointly on (input element, grid position).
    weight: ``[C_out, C_in, G·k^D]`` flattened as ``(g_in, *grid)``.
    spatial_dims: D.

  Returns:
    kernel ``[k, …, k, C_in·G, C_out·G]`` with
    ``out[p, i·G+h, o·G+g] = Σ_m reps[g, (h, vec(p)), m] · weight[o, i, m]``.
  """
  spatial_dims = check_spatial_dims(spatial_dims)
  _check_reps(reps)
  group, d = reps.shape[0], reps.shape[-1]
  if d % group:
    raise ValueError(f"reps of a group convolution must have shape [G, G·k^D, G·k^D]; got "
                     f"{tuple(reps.shape)} (size {d} is not a multiple of G={group})")
  k = _grid_side(d // group, spatial_dims, "reps (per group element)", tuple(reps.shape))
  if weight.ndim != 3 or weight.shape[-1] != d:
    raise ValueError(f"weight must have shape [C_out, C_in, {d}] to match reps "
                     f"{tuple(reps.shape)}; got {tuple(weight.shape)}")
  c_out, c_in, _ = weight.shape
  stack = jnp.einsum("gnm,oim->niog", reps.astype(weight.dtype), weight)
  stack = stack.reshape(group, *(k,) * spatial_dims, c_in, c_out * group)
  order = tuple(range(1, spatial_dims + 2)) + (0, spatial_dims + 2)  # [*grid, C_in, G, C_out·G]
  return jnp.transpose(stack, order).reshape(*(k,) * spatial_dims, c_in * group, c_out * group)


def _check_padding_nd(padding, spatial_dims: int):
  if isinstance(padding, str):
    return _check_padding(padding)
  if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
    return [(padding, padding)] * spatial_dims
  raise ValueError(f"padding must be one of {_PADDINGS} or a non-negative int; got {padding!r}")


def conv_nd(x: jnp.ndarray, kernel: jnp.ndarray, padding="VALID",
            compute_dtype: Optional[jnp.dtype] = None) -> jnp.ndarray:
  """Plain cross-correlation of rank ``D = kernel.ndim − 2`` (1, 2 or 3), stride 1.

  ``x [B, *grid, C_in]``, ``kernel [*k, C_in, C_out]`` → ``[B, *grid', C_out]``; the result
  is returned in ``x``'s dtype (``compute_dtype`` casts both operands first).
  """
  spatial_dims = check_spatial_dims(kernel.ndim - 2)
  if x.ndim != spatial_dims + 2:
    raise ValueError(f"x must have shape [B, *grid ({spatial_dims} axes), C_in] for a "
                     f"{spatial_dims}-D kernel {tuple(kernel.shape)}; got {tuple(x.shape)}")
  out_dtype = x.dtype
  if compute_dtype is not None:
    x, kernel = x.astype(compute_dtype), kernel.astype(compute_dtype)
  y = jax.lax.conv_general_dilated(
      x, kernel, window_strides=(1,) * spatial_dims,
      padding=_check_padding_nd(padding, spatial_dims),
      dimension_numbers=_DIMENSION_NUMBERS[spatial_dims])
  return y.astype(out_dtype)


def _unflatten_group_axis_nd(y, c_out: int, group: int, bias):
  """``[B, *grid, C_out·G]`` → ``[B, *grid, C_out, G]``, plus a bias ``[C_out]`` over G."""
  y = y.reshape(*y.shape[:-1], c_out, group)
  return y if bias is None else y + bias[:, None]


def lift_conv_nd(x: jnp.ndarray, reps: jnp.ndarray, weight: jnp.ndarray,
                 bias: Optional[jnp.ndarray] = None, padding="VALID", compute_dtype=None, *,
                 spatial_dims: int) -> jnp.ndarray:
  """Lifting convolution on a D-D grid: ``x [B, *grid, C_in]`` → ``[B, *grid', C_out, G]``.

  ``bias`` ``[C_out]`` is shared along the group axis.
  """
  spatial_dims = check_spatial_dims(spatial_dims)
  if x.ndim != spatial_dims + 2:
    raise ValueError(f"x must have shape [B, *grid ({spatial_dims} axes), C_in]; got "
                     f"{tuple(x.shape)}")
  if x.shape[-1] != weight.shape[1]:
    raise ValueError(f"x has {x.shape[-1]} channels but weight {tuple(weight.shape)} expects "
                     f"C_in={weight.shape[1]}")
  y = conv_nd(x, lift_kernels_nd(reps, weight, spatial_dims), padding, compute_dtype)
  return _unflatten_group_axis_nd(y, weight.shape[0], reps.shape[0], bias)


def group_conv_nd(x: jnp.ndarray, reps: jnp.ndarray, weight: jnp.ndarray,
                  bias: Optional[jnp.ndarray] = None, padding="VALID", compute_dtype=None, *,
                  spatial_dims: int) -> jnp.ndarray:
  """Group convolution on a D-D grid: ``x [B, *grid, C_in, G]`` → ``[B, *grid', C_out, G]``.

  ``bias`` ``[C_out]`` is shared along the group axis.
  """
  spatial_dims = check_spatial_dims(spatial_dims)
  group = reps.shape[0]
  if x.ndim != spatial_dims + 3 or x.shape[-1] != group or x.shape[-2] != weight.shape[1]:
    raise ValueError(f"x {tuple(x.shape)} must be [B, *grid ({spatial_dims} axes), "
                     f"C_in={weight.shape[1]}, G={group}] to match weight "
                     f"{tuple(weight.shape)} and reps {tuple(reps.shape)}")
  y = conv_nd(x.reshape(*x.shape[:-2], -1), group_kernels_nd(reps, weight, spatial_dims),
              padding, compute_dtype)
  return _unflatten_group_axis_nd(y, weight.shape[0], group, bias)
