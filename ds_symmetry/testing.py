"""Public equivariance helpers, usable on any JAX function (including users' own models).

A function ``f`` is equivariant when ``f(T_in(x)) == T_out(f(x))`` and invariant when
``f(T_in(x)) == f(x)``. The helpers compare the two sides numerically::

  from ds_symmetry import testing
  testing.assert_equivariant(model, images, testing.image_transform("C4", 1),
                             testing.group_feature_transform("C4", 1))

Transforms read every group from the registry in ``ds_symmetry.ops.groups``: element ``g``
acts on the spatial axes ``1 … D`` of ``[B, *grid, C]`` inputs and ``[B, *grid, C, G]`` feature
maps, where ``D`` is the rank of the group's grid (1 for ``shift<n>`` signals ``[B, W, C]``,
2 for images ``[B, H, W, C]``, 3 for ``cube`` and ``C4xC4`` voxels ``[B, D, H, W, C]``). For
images, rotation by ``r`` quarter turns is ``jnp.rot90(x, r, axes=(1, 2))``; the flip is
``jnp.flip(x, axis=2)`` (left↔right); D4 element ``f*4 + r`` is ``rot90(flip^f(x), r)``; C2
element ``g`` rotates by ``2g`` quarter turns. On a group axis the element ``g`` acts by the
regular representation, ``out[..., h] = y[..., g⁻¹h]``, which is how a lifting or group
convolution with exact representations transforms.

Exactness on a pixel grid needs odd kernels with 'VALID' padding on images whose size keeps
the rotation centre on the grid (e.g. 28×28), see ``ops.kernels``.

Errors. ``equivariance_error(..., relative=True)`` (the default) returns
``max|f(T_in x) − T_out f(x)| / max(max|f(x)|, tiny)``, which is comparable across models and
scales; ``relative=False`` returns the absolute maximum. Outputs may be pytrees of arrays: the
maxima run over all leaves.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ds_symmetry.ops import groups as _groups

Transform = Callable[[Any], Any]
_TINY = 1e-30


def _max_abs(tree) -> float:
  leaves = jax.tree_util.tree_leaves(tree)
  if not leaves:
    return 0.0
  return max(float(jnp.max(jnp.abs(jnp.asarray(leaf)))) if jnp.size(leaf) else 0.0
             for leaf in leaves)


def _difference(lhs, rhs):
  lhs_structure, rhs_structure = jax.tree_util.tree_structure(lhs), \
      jax.tree_util.tree_structure(rhs)
  if lhs_structure != rhs_structure:
    raise ValueError(f"f(transform_in(x)) and transform_out(f(x)) have different structures: "
                     f"{lhs_structure} vs {rhs_structure}")

  def subtract(a, b):
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape:
      raise ValueError(f"f(transform_in(x)) has shape {a.shape} but transform_out(f(x)) has "
                       f"shape {b.shape}")
    return a.astype(jnp.float32 if a.dtype == jnp.bfloat16 else a.dtype) - b

  return jax.tree_util.tree_map(subtract, lhs, rhs)


def _errors(f, x, transform_in, transform_out) -> Tuple[float, float]:
  output = f(x)
  transformed = f(transform_in(x))
  absolute = _max_abs(_difference(transformed, transform_out(output)))
  return absolute, _max_abs(output)


def equivariance_error(f: Callable, x, transform_in: Transform, transform_out: Transform, *,
                       relative: bool = True) -> float:
  """How far ``f`` is from equivariance at ``x``.

  Args:
    f: the function (model), ``x -> y`` (``y`` may be a pytree).
    x: an input (e.g. images ``[B, H, W, C]``).
    transform_in: acts on inputs.
    transform_out: acts on outputs.
    relative: divide by ``max(max|f(x)|, 1e-30)`` (default) or return the absolute error.

  Returns:
    ``max|f(transform_in(x)) − transform_out(f(x))|`` (relative or absolute), a float.
  """
  absolute, scale = _errors(f, x, transform_in, transform_out)
  return absolute / max(scale, _TINY) if relative else absolute


def invariance_error(f: Callable, x, transform_in: Transform, *, relative: bool = True) -> float:
  """:func:`equivariance_error` with ``transform_out`` the identity."""
  return equivariance_error(f, x, transform_in, lambda y: y, relative=relative)


def assert_equivariant(f: Callable, x, transform_in: Transform, transform_out: Transform, *,
                       atol: float = 1e-6, rtol: float = 1e-4) -> float:
  """Raises AssertionError unless ``f(T_in x) ≈ T_out f(x)``.

  Passes when ``max|f(T_in x) − T_out f(x)| ≤ atol + rtol · max|f(x)|``. The default
  ``rtol`` suits float32 models, whose rotated convolutions sum in a different order.

  Returns:
    The absolute error (a float), for logging.
  """
  absolute, scale = _errors(f, x, transform_in, transform_out)
  tolerance = atol + rtol * scale
  if not absolute <= tolerance:
    raise AssertionError(
        f"not equivariant: max |f(transform_in(x)) - transform_out(f(x))| = {absolute:.3e} "
        f"(relative {absolute / max(scale, _TINY):.3e} of max |f(x)| = {scale:.3e}) exceeds "
        f"tolerance atol + rtol*max|f(x)| = {atol:.1e} + {rtol:.1e}*{scale:.3e} = "
        f"{tolerance:.3e}")
  return absolute


def assert_invariant(f: Callable, x, transform_in: Transform, *, atol: float = 1e-6,
                     rtol: float = 1e-4) -> float:
  """:func:`assert_equivariant` with ``transform_out`` the identity."""
  return assert_equivariant(f, x, transform_in, lambda y: y, atol=atol, rtol=rtol)


# ---------------------------------------------------------------------------------- transforms


def rotate90(x, k: int = 1):
  """Rotates NHWC images (or ``[B, H, W, ...]`` maps) by ``k`` quarter turns on axes (1, 2)."""
  return jnp.rot90(x, k, axes=(1, 2))


def flip_horizontal(x):
  """Flips NHWC images (or ``[B, H, W, ...]`` maps) left↔right: ``jnp.flip(x, axis=2)``."""
  return jnp.flip(x, axis=2)


def _check_element(name, g) -> int:
  order = _groups.group_order(name)  # raises ValueError for an unknown name
  if not isinstance(g, (int, np.integer)) or isinstance(g, bool) or not 0 <= g < order:
    raise ValueError(f"g must be an int in [0, {order}) for group {name!r}; got {g!r}")
  return int(g)


def _spatial(name: str, g: int, x):
  dims = _groups.group_spatial_dims(name)
  if x.ndim < dims + 1:
    raise ValueError(f"x must have spatial axes 1 … {dims} ([B, *grid, ...]) for group "
                     f"{name!r}; got shape {x.shape}")
  return _groups.apply_element(name, g, x, axes=tuple(range(1, dims + 1)))


def image_transform(name: str, g: int) -> Transform:
  """The action of element ``g`` of group ``name`` on inputs ``[B, *grid, C]``: images
  ``[B, H, W, C]`` for 2-D groups, signals ``[B, W, C]`` (1-D) or voxels ``[B, D, H, W, C]``
  (3-D); any array whose axes ``1 … D`` are the grid."""
  g = _check_element(name, g)
  return lambda x: _spatial(name, g, x)


def group_axis_permutation(name: str, g: int) -> np.ndarray:
  """Index array ``idx [G]`` with ``idx[h] = g⁻¹h``, so ``y[..., idx]`` is the regular action."""
  g = _check_element(name, g)
  return _groups.cayley_table(name)[_groups.inverse_indices(name)[g]].astype(np.int32)


def group_feature_transform(name: str, g: int) -> Transform:
  """The action of element ``g`` on feature maps ``[B, *grid, C, G]`` (``[B, H, W, C, G]``
  for 2-D groups).

  Spatially as :func:`image_transform`; on the group axis by the regular representation,
  ``out[..., h] = y[..., g⁻¹h]`` (for C4: a cyclic shift by ``g``).
  """
  g = _check_element(name, g)
  order = _groups.group_order(name)
  index = jnp.asarray(group_axis_permutation(name, g))

  def transform(x):
    dims = _groups.group_spatial_dims(name)
    if x.ndim != dims + 3 or x.shape[-1] != order:
      raise ValueError(f"x must have shape [B, *grid ({dims} axes), C, G={order}] for group "
                       f"{name!r}; got {x.shape}")
    return jnp.take(_spatial(name, g, x), index, axis=-1)

  return transform
