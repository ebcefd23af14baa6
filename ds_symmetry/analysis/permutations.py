"""Nearest permutation matrices and distances between (stacks of) square matrices.

Everything here runs on the host in float64 numpy; inputs may be jax or numpy arrays.

Distance convention (used throughout ``ds_symmetry.analysis``): for two ``[d, d]`` matrices
``A`` and ``B``, ``distance(A, B) = ‖A − B‖_F / √d``. Two reference values make it readable:

* ``(1 − ε)·P + ε·J/d`` (a permutation blurred towards the uniform matrix ``J/d``) is at
  distance ``ε·√((d − 1)/d) ≈ ε`` from ``P``; the uniform matrix itself is at ``≈ 1``.
* Two permutations that disagree on ``m`` of the ``d`` positions are ``√(2m/d)`` apart, e.g.
  ``≈ 1.39`` for a 90° rotation of a 5×5 grid against the identity.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from ds_symmetry._validation import positive_int, square_shape


def to_numpy(value, name: str) -> np.ndarray:
  """Converts a jax/numpy array (or nested list) to a float64 numpy array."""
  try:
    array = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError) as error:
    raise ValueError(f"{name} must be a numeric array; got {type(value).__name__}") from error
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{name} must contain only finite values; got NaN or inf in an array "
                     f"of shape {array.shape}")
  return array


def check_matrix(value, name: str = "matrix") -> np.ndarray:
  """Returns ``value`` as float64 ``[d, d]``; raises ValueError for any other shape."""
  array = to_numpy(value, name)
  square_shape(name, array.shape, ndim=2)
  return array


def check_stack(value, name: str = "stack") -> np.ndarray:
  """Returns ``value`` as float64 ``[n, d, d]``; raises ValueError for any other shape."""
  array = to_numpy(value, name)
  square_shape(name, array.shape, ndim=3)
  return array


def check_kernel_size(kernel_size) -> int:
  return positive_int("kernel_size", kernel_size)


def pairwise_distances(first, second) -> np.ndarray:
  """All distances ``‖A_i − B_j‖_F / √d`` between two stacks.

  Args:
    first: ``[n, d, d]``.
    second: ``[m, d, d]``.

  Returns:
    float64 ``[n, m]``.
  """
  a = check_stack(first, "first")
  b = check_stack(second, "second")
  if a.shape[1:] != b.shape[1:]:
    raise ValueError(f"first and second must hold matrices of the same size; got "
                     f"{a.shape} and {b.shape}")
  d = a.shape[-1]
  a_flat, b_flat = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
  squared = (np.sum(a_flat**2, axis=1)[:, None] + np.sum(b_flat**2, axis=1)[None, :]
             - 2.0 * a_flat @ b_flat.T)
  return np.sqrt(np.maximum(squared, 0.0) / d)


def _nearest(matrix: np.ndarray) -> Tuple[np.ndarray, float]:
  d = matrix.shape[0]
  rows, cols = linear_sum_assignment(matrix, maximize=True)
  permutation = np.zeros_like(matrix)
  permutation[rows, cols] = 1.0
  return permutation, float(np.linalg.norm(matrix - permutation) / np.sqrt(d))


def nearest_permutation(matrix) -> Tuple[np.ndarray, float]:
  """The permutation matrix closest to a (soft) square matrix.

  Solves the linear assignment problem ``max_π Σ_i S[i, π(i)]`` (Hungarian algorithm,
  ``scipy.optimize.linear_sum_assignment``). For a doubly stochastic ``S`` this is also the
  permutation nearest in Frobenius norm, since ``‖S − P‖² = ‖S‖² + d − 2⟨S, P⟩``.

  Args:
    matrix: ``[d, d]`` (jax or numpy).

  Returns:
    ``(P, distance)``: float64 ``[d, d]`` 0/1 matrix with ``P[i, π(i)] = 1``, and
    ``‖S − P‖_F / √d`` as a Python float.
  """
  return _nearest(check_matrix(matrix, "matrix"))


def nearest_permutations(stack) -> Tuple[np.ndarray, np.ndarray]:
  """:func:`nearest_permutation` for every matrix of a stack.

  Args:
    stack: ``[n, d, d]``.

  Returns:
    ``(P, distances)``: float64 ``[n, d, d]`` permutation matrices and float64 ``[n]``.
  """
  array = check_stack(stack, "stack")
  results = [_nearest(matrix) for matrix in array]
  return (np.stack([p for p, _ in results]),
          np.asarray([distance for _, distance in results], dtype=np.float64))


def permutation_indices(permutation) -> np.ndarray:
  """For a 0/1 permutation matrix ``P [d, d]``, the int ``[d]`` array ``π`` with
  ``P[i, π[i]] = 1`` (so ``(P @ v)[i] = v[π[i]]``)."""
  array = check_matrix(permutation, "permutation")
  return np.argmax(array, axis=1).astype(np.int64)
