"""The data's own invariances, read off a trained network: an independent check of discovery.

A network trained on data that are symmetric under an isometry ``g`` of the image grid sees
``g·x`` as just another sample: its held-out loss on ``g·x`` equals its loss on ``x``. For a
transformation the data do not have (a mirror on digits, a 180° turn of a 6), ``g·x`` is out of
distribution and the loss rises. :func:`invariance_ratios` measures

    ratio(g) = CE(f(g·x), y) / CE(f(x), y)          for the 8 elements g of D4,

and :func:`invariant_subgroup` names the largest subgroup of ``D4`` (``ops.D4_SUBGROUPS``)
whose every element has ``ratio ≤ 1 + tolerance``. Nothing here is learned about the group:
it is a hypothesis test on a trained classifier, independent of how a weight-sharing model
chose its answer.

The isometries act on the image axes ``(1, 2)`` of ``[B, H, W, C]`` square images exactly as
on kernels (``ops.apply_element("D4", g, ·)``).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ds_symmetry.ops import groups as groups_ops


def invariance_ratios(apply_fn: Callable[[jnp.ndarray], jnp.ndarray], images, labels, *,
                      batch_size: int = 1000) -> np.ndarray:
  """Held-out loss on every isometry of the images, relative to the loss on the images.

  Args:
    apply_fn: ``[B, H, W, C]`` float → logits ``[B, K]`` (e.g. a model in eval mode).
    images: float ``[N, H, W, C]`` with ``H == W`` (preprocessed as the model expects).
    labels: int ``[N]``.
    batch_size: images per call of ``apply_fn``.

  Returns:
    float64 ``[8]``: ``ratio[g]`` for the ``D4`` elements ``g`` (``ratio[0] = 1``).
  """
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.ndim != 4 or images.shape[1] != images.shape[2]:
    raise ValueError(f"images: shape {images.shape} is not accepted; expected square images "
                     "[N, H, W, C] with H == W")
  if labels.shape != images.shape[:1]:
    raise ValueError(f"labels: shape {labels.shape} is not accepted; expected "
                     f"{images.shape[:1]}")
  if int(batch_size) != batch_size or batch_size < 1:
    raise ValueError(f"batch_size: {batch_size!r} is not accepted; expected a positive integer")
  totals = np.zeros(8, np.float64)
  for start in range(0, len(images), int(batch_size)):
    x = jnp.asarray(images[start:start + int(batch_size)])
    y = jnp.asarray(labels[start:start + int(batch_size)])
    for g in range(8):
      logits = apply_fn(groups_ops.apply_element("D4", g, x, axes=(1, 2)))
      losses = optax.softmax_cross_entropy_with_integer_labels(
          jnp.asarray(logits, jnp.float32), y)
      totals[g] += float(jax.device_get(jnp.sum(losses)))
  if not totals[0] > 0:
    raise ValueError("the network's loss on the untransformed images is 0; no ratio is defined")
  return totals / totals[0]


def invariant_subgroup(ratios, tolerance: float = 0.05,
                       candidates: Optional[Sequence[str]] = None) -> str:
  """The largest candidate subgroup of ``D4`` all of whose elements have
  ``ratio ≤ 1 + tolerance``.

  The accepted elements need not form a group; the answer is the largest candidate inside
  them (ties between candidates of equal order: the one with the smaller worst ratio). The
  trivial group is always accepted.

  Args:
    ratios: ``[8]`` from :func:`invariance_ratios`.
    tolerance: ``> 0``; the smallest ratio of a non-symmetry measured on the MNIST variants was
      1.12 (a mirror of continuously rotated digits), of a symmetry at most 1.00.
    candidates: names from ``ops.D4_SUBGROUPS`` (default: all ten).
  """
  ratios = np.asarray(ratios, np.float64)
  if ratios.shape != (8,) or not np.all(np.isfinite(ratios)):
    raise ValueError(f"ratios: shape {ratios.shape} is not accepted; expected 8 finite ratios")
  if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance > 0):
    raise ValueError(f"tolerance: {tolerance!r} is not accepted; expected a positive number")
  best, best_key = "trivial", (1, 0.0)
  for name in (groups_ops.D4_SUBGROUPS if candidates is None else candidates):
    elements = groups_ops.d4_elements(name)
    worst = float(max(ratios[list(elements)]))
    if worst <= 1.0 + tolerance:
      key = (len(elements), -worst)
      if key > best_key:
        best, best_key = name, key
  return best


def subgroup_ratios(ratios) -> Dict[str, float]:
  """``{subgroup: worst ratio over its elements}`` for the ten subgroups of ``D4``."""
  ratios = np.asarray(ratios, np.float64)
  return {name: float(max(ratios[list(groups_ops.d4_elements(name))]))
          for name in groups_ops.D4_SUBGROUPS}
