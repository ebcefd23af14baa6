"""Convex decomposition of a learned matrix onto a basis of permutations (paper App. B).

The paper fits each learned ``R`` as ``Σ_k c_k P_k`` with ``c_k ≥ 0`` and ``Σ_k c_k = 1``,
minimising ``‖Σ_k c_k P_k − R‖_F`` (least squares on the probability simplex), and shows the
coefficients as heat maps. Here the problem is reduced to its ``m × m`` Gram form

  ``min_c  cᵀ M c − 2 bᵀ c``,  ``M = ⟨P_a, P_b⟩``,  ``b = ⟨P_a, R⟩``,

and solved with SciPy's SLSQP (exact simplex constraints, analytic gradient). ``m`` is the
number of basis matrices (8 for D4), so this is cheap for any ``d``.

Troubleshooting: the coefficients are unique only when the basis matrices are linearly
independent (true for the group representations of ``ops.groups`` with ``k ≥ 2``). With a
dependent basis (e.g. ``k = 1``, where every element is the 1×1 identity) any minimiser is
returned.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from ds_symmetry.analysis.permutations import check_stack, to_numpy


def _solve_simplex_least_squares(gram: np.ndarray, target: np.ndarray,
                                 scale: float) -> np.ndarray:
  m = gram.shape[0]
  gram, target = gram / scale, target / scale

  def objective(c):
    return float(c @ gram @ c - 2.0 * target @ c)

  def gradient(c):
    return 2.0 * (gram @ c - target)

  start = np.full(m, 1.0 / m)
  result = minimize(
      objective, start, jac=gradient, method="SLSQP", bounds=[(0.0, 1.0)] * m,
      constraints=[{"type": "eq", "fun": lambda c: np.sum(c) - 1.0,
                    "jac": lambda c: np.ones_like(c)}],
      options={"ftol": 1e-15, "maxiter": 1000})
  coefficients = np.clip(result.x, 0.0, None)
  total = coefficients.sum()
  return coefficients / total if total > 0 else start


def convex_decomposition(matrix, basis) -> np.ndarray:
  """Non-negative coefficients summing to one that best rebuild ``matrix`` from ``basis``.

  Args:
    matrix: ``[d, d]`` (e.g. a learned ``R[g]``), or a stack ``[n, d, d]``.
    basis: ``[m, d, d]`` (e.g. ``ops.spatial_permutations("C4", k)``).

  Returns:
    float64 ``[m]`` (or ``[n, m]`` for a stack) with ``c ≥ 0``, ``Σ c = 1``, minimising
    ``‖Σ_k c_k basis[k] − matrix‖_F``.
  """
  basis_array = check_stack(basis, "basis")
  array = to_numpy(matrix, "matrix")
  if array.ndim not in (2, 3) or array.shape[-2:] != basis_array.shape[1:]:
    raise ValueError(f"matrix must have shape [d, d] or [n, d, d] matching basis "
                     f"{basis_array.shape}; got {array.shape}")
  flat_basis = basis_array.reshape(basis_array.shape[0], -1)
  gram = flat_basis @ flat_basis.T
  scale = max(float(np.max(np.abs(np.diag(gram)))), 1e-300)
  targets = array.reshape(-1, flat_basis.shape[1]) @ flat_basis.T
  coefficients = np.stack([_solve_simplex_least_squares(gram, target, scale)
                           for target in targets])
  return coefficients[0] if array.ndim == 2 else coefficients


def convex_combination(coefficients, basis) -> np.ndarray:
  """``Σ_k c_k basis[k]``: coefficients ``[m]`` or ``[n, m]``, basis ``[m, d, d]`` →
  ``[d, d]`` or ``[n, d, d]``."""
  basis_array = check_stack(basis, "basis")
  c = to_numpy(coefficients, "coefficients")
  if c.shape[-1] != basis_array.shape[0] or c.ndim not in (1, 2):
    raise ValueError(f"coefficients must have shape [m] or [n, m] with m = "
                     f"{basis_array.shape[0]}; got {c.shape}")
  return np.tensordot(c, basis_array, axes=([-1], [0]))


def decomposition_score(coefficients, threshold: float = 0.9, exclude=()) -> float:
  """Fraction of learned elements that sit on their own true element.

  Counts the distinct true elements ``k`` that some learned element puts at least
  ``threshold`` of its coefficient mass on (two learned elements on the same ``k`` count
  once), divided by the number of learned elements.

  Args:
    coefficients: ``[n, m]`` from :func:`convex_decomposition` (rows: learned elements).
    threshold: the mass a learned element must put on one true element.
    exclude: true elements that do not count (e.g. one already taken by a fixed identity).

  Returns:
    A float in [0, 1].
  """
  c = to_numpy(coefficients, "coefficients")
  if c.ndim != 2 or 0 in c.shape:
    raise ValueError(f"coefficients must have shape [n, m]; got {c.shape}")
  if not 0 < threshold <= 1:
    raise ValueError(f"threshold must be in (0, 1]; got {threshold!r}")
  hits = {int(k) for k, value in zip(np.argmax(c, axis=1), np.max(c, axis=1))
          if value >= threshold} - {int(k) for k in exclude}
  return len(hits) / c.shape[0]
