"""Winograd's minimal filtering: a stride-1 2-D convolution with fewer multiplications.

Winograd's algorithm ``F(m, r)`` computes ``m`` outputs of a 1-D correlation with an ``r``-tap
kernel from a tile of ``n = m + r − 1`` inputs with ``n`` multiplications instead of ``m·r``::

    y = Aᵀ [(G g) ⊙ (Bᵀ d)]        d: [n] inputs, g: [r] kernel, y: [m] outputs

and in 2-D (the kernel rows and columns each by their own ``F``) ``Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d
B)] A``. Over the channels of a convolution layer the elementwise product becomes one matrix
product per tile position: with ``V[ξ] [B·tiles, C_in]`` the transformed input tiles and
``U[ξ] [C_in, C_out]`` the transformed kernel, ``M[ξ] = V[ξ] U[ξ]`` for each of the ``n²``
positions ``ξ``. For a 5×5 kernel and ``n = 8`` (``F(4, 5)``) that is 64 products per 16 outputs
instead of 400, 6.25× fewer multiply-adds, at the price of the transforms (additions with
small constants) and a larger float32 error than a direct convolution (below).

The matrices come from the Toom–Cook construction (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", CVPR 2016): evaluate the product of two polynomials at the
points ``0, 1, −1, 2, −2, 1/2, −1/2`` and at infinity, and interpolate; the correlation is the
transposed bilinear algorithm of that polynomial product. :func:`transforms_exact` builds them in
exact rational arithmetic (``fractions``), so ``Aᵀ [(G g) ⊙ (Bᵀ d)]`` is the correlation
exactly before rounding to float32 (``tests/test_winograd.py`` checks the identity in rational
arithmetic).

Every tile here has ``n = 8`` inputs (:data:`TILE`), so a kernel of ``r`` taps along an axis
gives ``m = 9 − r`` outputs per tile along it (``2 ≤ r ≤ 7``: :func:`supports`). Float32
error: about 1e-5 of the output's largest magnitude for ``F(4, 5)`` on random data, against
about 1e-6 for XLA's convolution (both measured against float64 in the tests); the tests
bound it. Gradients are JAX's transposes of the same algorithm (``ops.conv_paths`` uses them
as its ``"winograd"`` input and weight gradients). Memory: the transformed input tiles are
``(8 / m)²`` times the input (4× for ``F(4, 5)``) and the products as large; a training step of
the MNIST models peaks at about 1.5× its memory with XLA's convolution
(``docs/benchmarks.md``). Compiled on XLA:CPU, the small transform products are laid out with
the contracted axis last, so relayout copies of the tiles sit between them (in a profile of
the 64-channel CNN's step, as much time as the path's products). Writing the transforms as
fused sums of strided slices instead removes those products and copies but made training
steps 3–13% slower; one Kronecker-matrix product per 2-D transform made them up to 4.4×
slower (``docs/benchmarks.md``).
"""

from __future__ import annotations

import fractions
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

TILE = 8
"""Inputs per tile along each axis (``n``); ``m = TILE − r + 1`` outputs per tile."""

POINTS = (0, 1, -1, 2, -2, fractions.Fraction(1, 2), fractions.Fraction(-1, 2))
"""The finite interpolation points (``TILE − 1`` of them; the last point is infinity)."""


def supports(kernel_shape: Sequence[int]) -> bool:
  """Whether the path computes a kernel ``[kh, kw, …]``: ``2 ≤ kh, kw ≤ TILE − 1``."""
  return all(2 <= k <= TILE - 1 for k in kernel_shape[:2])


def _vandermonde(points, columns: int):
  """Rows ``[p⁰, p¹, …, p^(columns−1)]`` for each finite point, then the row at infinity (the
  leading coefficient): ``[0, …, 0, 1]``."""
  rows = [[fractions.Fraction(p) ** j for j in range(columns)] for p in points]
  rows.append([fractions.Fraction(0)] * (columns - 1) + [fractions.Fraction(1)])
  return rows


def _inverse(matrix):
  """Exact inverse of a square matrix of Fractions (Gauss–Jordan)."""
  size = len(matrix)
  work = [list(row) + [fractions.Fraction(int(i == j)) for j in range(size)]
          for i, row in enumerate(matrix)]
  for col in range(size):
    pivot = next(r for r in range(col, size) if work[r][col] != 0)
    work[col], work[pivot] = work[pivot], work[col]
    scale = work[col][col]
    work[col] = [v / scale for v in work[col]]
    for r in range(size):
      if r != col and work[r][col] != 0:
        factor = work[r][col]
        work[r] = [a - factor * b for a, b in zip(work[r], work[col])]
  return [row[size:] for row in work]


@functools.lru_cache(maxsize=None)
def transforms_exact(r: int):
  """``(Aᵀ [m, n], G [n, r], Bᵀ [n, n])`` of ``F(m, r)`` with ``n = TILE``, as nested lists of
  ``fractions.Fraction``: ``y = Aᵀ [(G g) ⊙ (Bᵀ d)]`` is the correlation ``y_i = Σ_j d_{i+j}
  g_j`` of ``d [n]`` and ``g [r]``, ``i < m``.

  Raises:
    ValueError: ``r`` outside ``2 … TILE − 1``.
  """
  if not 2 <= r <= TILE - 1:
    raise ValueError(f"r={r!r}: expected a kernel size from 2 to {TILE - 1} (tile {TILE})")
  n = TILE
  m = n - r + 1
  points = POINTS[:n - 1]
  a = _vandermonde(points, m)          # [n, m]: evaluates the output polynomial
  g = _vandermonde(points, r)          # [n, r]: evaluates the kernel polynomial
  c = _inverse(_vandermonde(points, n))  # [n, n]: interpolates the product
  # The polynomial product s = C [(G g) ⊙ (A h)]; its transpose (Bᵀ = Cᵀ, Aᵀ) is the
  # correlation.
  a_t = [list(col) for col in zip(*a)]
  b_t = [list(col) for col in zip(*c)]
  return a_t, g, b_t


def transforms(r: int, dtype=np.float32):
  """:func:`transforms_exact` as numpy arrays of ``dtype``: ``Aᵀ [m, n]``, ``G [n, r]``,
  ``Bᵀ [n, n]``."""
  return tuple(np.array([[float(v) for v in row] for row in mat], dtype=dtype)
               for mat in transforms_exact(r))


def _strided_tiles(x, axis: int, count: int, step: int):
  """``[TILE, …]``: slice ``a`` holds ``x`` at indices ``a, a + step, …`` (``count`` of them)
  along ``axis`` — element ``t`` of slice ``a`` is input ``a`` of tile ``t``."""
  return jnp.stack([jax.lax.slice_in_dim(x, a, a + step * (count - 1) + 1, step, axis=axis)
                    for a in range(TILE)])


def conv_winograd(x: jnp.ndarray, kernel: jnp.ndarray, padding) -> jnp.ndarray:
  """Stride-1 NHWC/HWIO cross-correlation by ``F(m_h, kh) × F(m_w, kw)``: ``x [B, H, W,
  C_in]``, ``kernel [kh, kw, C_in, C_out]`` → ``[B, Ho, Wo, C_out]`` (``lax.conv_general_
  dilated``'s values up to the float32 error in the module docstring).

  Args:
    x: the input.
    kernel: the kernel, ``2 ≤ kh, kw ≤ 7`` (:func:`supports`).
    padding: ``((top, bottom), (left, right))`` (negative amounts crop).

  Returns:
    the convolution in ``x``'s dtype. Everything runs in at least float32, the ``TILE²``
    matrix products too: transformed tiles rounded to bfloat16 put errors of about 10% of the
    output's scale into a 5×5 convolution (``tests/test_conv_paths.py``'s bfloat16 case).
  """
  kh, kw, c_in, c_out = kernel.shape
  (top, bottom), (left, right) = padding
  ho = x.shape[1] + top + bottom - kh + 1
  wo = x.shape[2] + left + right - kw + 1
  compute = jnp.promote_types(x.dtype, jnp.float32)
  a_h, g_h, b_h = (jnp.asarray(t, compute) for t in transforms(kh))
  a_w, g_w, b_w = (jnp.asarray(t, compute) for t in transforms(kw))
  m_h, m_w = a_h.shape[0], a_w.shape[0]
  tiles_h, tiles_w = -(-ho // m_h), -(-wo // m_w)
  # Zero rows / columns below and right so that whole tiles cover the output.
  extra_h, extra_w = tiles_h * m_h - ho, tiles_w * m_w - wo
  config = [(0, 0, 0), (top, bottom + extra_h, 0), (left, right + extra_w, 0), (0, 0, 0)]
  xp = jax.lax.pad(x.astype(compute), jnp.zeros((), compute), config)
  batch = x.shape[0]
  # Input transform Bᵀ d B, rows then columns: v [TILE, TILE, B·tiles_h·tiles_w, C_in].
  v = jnp.einsum("ia,abtwc->ibtwc", b_h, _strided_tiles(xp, 1, tiles_h, m_h))
  v = jnp.einsum("jk,kibtsc->ijbtsc", b_w, _strided_tiles(v, 3, tiles_w, m_w))
  v = v.reshape(TILE * TILE, batch * tiles_h * tiles_w, c_in)
  # Kernel transform G g Gᵀ: u [TILE², C_in, C_out].
  u = jnp.einsum("ia,abco,jb->ijco", g_h, kernel.astype(compute), g_w)
  u = u.reshape(TILE * TILE, c_in, c_out)
  products = jax.lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))),
                                 preferred_element_type=compute)
  products = products.reshape(TILE, TILE, batch, tiles_h, tiles_w, c_out)
  # Output transform Aᵀ M A, tiles laid back in place.
  y = jnp.einsum("ui,ijbtso,vj->btusvo", a_h, products, a_w)
  y = y.reshape(batch, tiles_h * m_h, tiles_w * m_w, c_out)
  return y[:, :ho, :wo].astype(x.dtype)
