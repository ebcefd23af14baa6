"""Argument checks shared by ``ds_symmetry.ops`` and ``ds_symmetry.analysis``.

Each check raises ``ValueError`` with one message shape, ``"<argument> must <expectation>; got
<value>"``, and returns the value normalised (a Python int, a float array, …) so callers can
write ``k = positive_int("kernel_size", kernel_size)``. Checks on values that may be traced under
``jax.jit`` accept tracers unchecked: only concrete values can be inspected.
"""

from __future__ import annotations

import numbers
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

__all__ = ["positive_int", "positive_number", "float_array", "square_shape"]


def positive_int(name: str, value) -> int:
  """``value`` as a Python int ``>= 1``; bools, floats and other types are rejected."""
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
    raise ValueError(f"{name} must be a positive int; got {value!r}")
  return int(value)


def positive_number(name: str, value, *, allow_zero: bool = False):
  """Checks ``value > 0`` (or ``>= 0`` with ``allow_zero``) when it is concrete; NaN fails.

  Returns ``value`` unchanged (a traced value is returned without a check).
  """
  if isinstance(value, jax.core.Tracer):
    return value
  expectation = ">= 0" if allow_zero else "> 0"
  try:
    concrete = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a real number {expectation}; got {value!r}") from None
  if not (concrete >= 0 if allow_zero else concrete > 0):  # NaN compares false
    raise ValueError(f"{name} must be {expectation}; got {value!r}")
  return value


def float_array(name: str, value) -> jax.Array:
  """``value`` as a real floating jax array; integer and bool inputs are promoted to the
  default float dtype, complex ones are rejected."""
  array = jnp.asarray(value)
  if jnp.issubdtype(array.dtype, jnp.complexfloating):
    raise ValueError(f"{name} must be a real floating array; got dtype {array.dtype}")
  if not jnp.issubdtype(array.dtype, jnp.floating):
    array = array.astype(jnp.result_type(float))
  return array


_SQUARE_LAYOUTS = {None: "[..., n, n] (at least 2-D, square in its last two axes)",
                   2: "[d, d] (a non-empty square matrix)",
                   3: "[n, d, d] (a non-empty stack of square matrices)"}


def square_shape(name: str, shape: Sequence[int], *, ndim: Optional[int] = None) -> None:
  """Checks that ``shape`` is square in its last two axes.

  Args:
    name: the argument's name, for the message.
    shape: the array's shape.
    ndim: ``None`` for any number of leading axes (``[..., n, n]``, empty sizes allowed), or
      exactly 2 (``[d, d]``) or 3 (``[n, d, d]``), then with no zero-sized axis.
  """
  if ndim not in _SQUARE_LAYOUTS:
    raise ValueError(f"ndim must be one of {list(_SQUARE_LAYOUTS)}; got {ndim!r}")
  shape = tuple(int(size) for size in shape)
  if ndim is None:
    ok = len(shape) >= 2 and shape[-1] == shape[-2]
  else:
    ok = len(shape) == ndim and shape[-1] == shape[-2] and 0 not in shape
  if not ok:
    raise ValueError(f"{name} must have shape {_SQUARE_LAYOUTS[ndim]}; got {shape}")
