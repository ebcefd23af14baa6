"""PNG figures of learned stacks (matplotlib, Agg canvas, no pyplot global state).

matplotlib is imported inside each function, so ``import ds_symmetry.analysis`` stays cheap.
Every function writes one PNG to ``path`` (parent folders are created) and returns the path
as a ``pathlib.Path``.
"""

from __future__ import annotations

import os
import pathlib
from typing import Optional, Union

import numpy as np

from ds_symmetry._validation import positive_int
from ds_symmetry.analysis.groups import cayley_error
from ds_symmetry.analysis.permutations import check_stack, nearest_permutations, to_numpy

PathLike = Union[str, os.PathLike]


def _figure(width: float, height: float):
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
  FigureCanvasAgg(figure)
  return figure


def _save(figure, path: PathLike) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, format="png")
  return path


def plot_stack(stack, path: PathLike, title: Optional[str] = None) -> pathlib.Path:
  """Heat maps of every ``R_g`` (top row) above its nearest exact permutation (bottom row).

  Args:
    stack: ``[n, d, d]``.
    path: output PNG file.
    title: optional figure title.

  Returns:
    ``path``.
  """
  array = check_stack(stack, "stack")
  permutations, distances = nearest_permutations(array)
  n = array.shape[0]
  figure = _figure(1.9 * n + 0.6, 4.2)
  axes = figure.subplots(2, n, squeeze=False)
  for g in range(n):
    image = axes[0, g].imshow(array[g], cmap="viridis", vmin=0.0, vmax=max(1e-12, array.max()))
    axes[0, g].set_title(f"R[{g}]", fontsize=9)
    axes[1, g].imshow(permutations[g], cmap="Greys", vmin=0.0, vmax=1.0)
    axes[1, g].set_title(f"nearest P, dist {distances[g]:.2f}", fontsize=8)
    for axis in axes[:, g]:
      axis.set_xticks([])
      axis.set_yticks([])
  figure.colorbar(image, ax=axes[0, :].tolist(), shrink=0.8)
  if title:
    figure.suptitle(title)
  return _save(figure, path)


def plot_kernel_orbit(weight, stack, path: PathLike, max_channels: int = 8,
                      in_channel: int = 0) -> pathlib.Path:
  """Canonical kernels under each learned element (the paper's Fig. 2).

  Panel ``(g, c)`` shows ``R[g] · vec(θ_c)`` as a k×k image: rows are stack elements, columns
  output channels (one colour scale per column).

  Args:
    weight: ``[C_out, C_in, k²]`` lifting weights (input channel ``in_channel`` is shown) or
      ``[C_out, k²]``.
    stack: ``[G, k², k²]`` lifting representation stack.
    path: output PNG file.
    max_channels: at most this many output channels are drawn.
    in_channel: which input channel of a 3-D ``weight`` to draw.

  Returns:
    ``path``.
  """
  reps = check_stack(stack, "stack")
  kernels = to_numpy(weight, "weight")
  if kernels.ndim == 3:
    if not 0 <= in_channel < kernels.shape[1]:
      raise ValueError(f"in_channel must be in [0, {kernels.shape[1]}); got {in_channel!r}")
    kernels = kernels[:, in_channel]
  if kernels.ndim != 2 or kernels.shape[-1] != reps.shape[-1]:
    raise ValueError(f"weight must have shape [C_out, C_in, {reps.shape[-1]}] or "
                     f"[C_out, {reps.shape[-1]}] to match stack {reps.shape}; got "
                     f"{to_numpy(weight, 'weight').shape}")
  k = int(round(np.sqrt(reps.shape[-1])))
  if k * k != reps.shape[-1]:
    raise ValueError(f"stack must act on flattened k×k kernels; got d={reps.shape[-1]}")
  max_channels = positive_int("max_channels", max_channels)
  channels = min(max_channels, kernels.shape[0])
  orbit = np.einsum("gnm,cm->gcn", reps, kernels[:channels]).reshape(
      reps.shape[0], channels, k, k)
  figure = _figure(1.2 * channels + 0.6, 1.2 * reps.shape[0] + 0.4)
  axes = figure.subplots(reps.shape[0], channels, squeeze=False)
  for c in range(channels):
    bound = max(1e-12, float(np.abs(orbit[:, c]).max()))
    for g in range(reps.shape[0]):
      axis = axes[g, c]
      axis.imshow(orbit[g, c], cmap="RdBu_r", vmin=-bound, vmax=bound)
      axis.set_xticks([])
      axis.set_yticks([])
      if g == 0:
        axis.set_title(f"ch {c}", fontsize=8)
      if c == 0:
        axis.set_ylabel(f"R[{g}]", fontsize=8)
  return _save(figure, path)


def plot_cayley(stack, path: PathLike) -> pathlib.Path:
  """The approximate Cayley table (left, product index as text) and its errors (right).

  Args:
    stack: ``[n, d, d]``.
    path: output PNG file.

  Returns:
    ``path``.
  """
  result = cayley_error(stack)
  n = result.table.shape[0]
  figure = _figure(2 * (0.5 * n + 1.5), 0.5 * n + 1.5)
  table_axis, error_axis = figure.subplots(1, 2)
  table_axis.imshow(result.table, cmap="tab10" if n <= 10 else "viridis", vmin=0,
                    vmax=max(n - 1, 1))
  for a in range(n):
    for b in range(n):
      table_axis.text(b, a, str(result.table[a, b]), ha="center", va="center", fontsize=8)
  table_axis.set_title("argmin_c |R_a R_b - R_c|", fontsize=9)
  image = error_axis.imshow(result.errors, cmap="magma", vmin=0.0)
  error_axis.set_title(f"error (max {result.max_error:.2f})", fontsize=9)
  figure.colorbar(image, ax=error_axis, shrink=0.8)
  for axis in (table_axis, error_axis):
    axis.set_xlabel("b")
    axis.set_ylabel("a")
    axis.set_xticks(range(n))
    axis.set_yticks(range(n))
  return _save(figure, path)


def plot_decomposition(coefficients, path: PathLike, title: Optional[str] = None,
                       highlight=None, column_label: str = "true element",
                       row_label: str = "learned element") -> pathlib.Path:
  """Heat map of convex-decomposition coefficients (the paper's Figs. 5, 6, 8, 11).

  Args:
    coefficients: ``[n, m]``: row ``i`` is learned element ``i`` written as a convex
      combination of the ``m`` true elements (``analysis.convex_decomposition``).
    path: output PNG file.
    title: optional title.
    highlight: optional column indices (e.g. a subgroup's elements) marked in red below the
      map.
    column_label, row_label: axis labels.

  Returns:
    ``path``.
  """
  c = to_numpy(coefficients, "coefficients")
  if c.ndim != 2 or 0 in c.shape:
    raise ValueError(f"coefficients must have shape [n, m]; got {c.shape}")
  n, m = c.shape
  figure = _figure(min(2.0 + 0.16 * m, 14.0), min(1.6 + 0.2 * n, 9.0))
  axis = figure.subplots()
  image = axis.imshow(c, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto",
                      interpolation="nearest")
  if highlight is not None:
    columns = np.asarray(list(highlight), dtype=int)
    axis.scatter(columns, np.full(columns.shape, n - 0.5 + 0.35), marker="s", s=10,
                 color="red", clip_on=False)
  axis.set_xlabel(column_label)
  axis.set_ylabel(row_label)
  step = max(1, m // 16)
  axis.set_xticks(range(0, m, step))
  axis.set_yticks(range(0, n, max(1, n // 16)))
  figure.colorbar(image, ax=axis, shrink=0.8, label="coefficient")
  if title:
    axis.set_title(title, fontsize=9)
  return _save(figure, path)


def plot_stack_against(stack, reference, path: PathLike, title: Optional[str] = None,
                       labels=("learned", "exact")) -> pathlib.Path:
  """Heat maps of a learned stack (top row) above a reference stack (bottom row), element by
  element, e.g. a learned lifting stack beside the C4 permutations it was assigned to (the
  paper's Fig. 3) or learned group-convolution stacks beside the shift-twist representation
  (Figs. 9–10).

  Args:
    stack: ``[n, d, d]``.
    reference: ``[n, d, d]`` (reorder it to match ``stack`` first, e.g. by an assignment).
    path: output PNG file.
    title: optional figure title.
    labels: row names.

  Returns:
    ``path``.
  """
  top, bottom = check_stack(stack, "stack"), check_stack(reference, "reference")
  if top.shape != bottom.shape:
    raise ValueError(f"stack {top.shape} and reference {bottom.shape} must have the same shape")
  n = top.shape[0]
  figure = _figure(1.9 * n + 0.8, 4.2)
  axes = figure.subplots(2, n, squeeze=False)
  for g in range(n):
    for row, (array, label) in enumerate(zip((top, bottom), labels)):
      axes[row, g].imshow(array[g], cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
      axes[row, g].set_title(f"{label} [{g}]", fontsize=8)
      axes[row, g].set_xticks([])
      axes[row, g].set_yticks([])
  if title:
    figure.suptitle(title)
  return _save(figure, path)


def plot_training_curves(records, path: PathLike, title: Optional[str] = None) -> pathlib.Path:
  """Train loss (per logged step) and test accuracy (per evaluation) from ``metrics.jsonl``.

  Args:
    records: the file's records (dicts); those with ``train_loss`` (or ``loss``) and a
      ``step`` give the loss curve, those with ``test_accuracy`` the accuracy curve.
    path: output PNG file.
    title: optional figure title.

  Returns:
    ``path``.
  """
  def curve(key_options):
    points = []
    for record in records:
      for key in key_options:
        if key in record and "step" in record:
          points.append((record["step"], record[key]))
          break
    return np.asarray(points, dtype=float).reshape(-1, 2)

  loss = curve(("train_loss", "loss"))
  accuracy = curve(("test_accuracy", "eval_accuracy"))
  figure = _figure(8.0, 3.2)
  loss_axis, accuracy_axis = figure.subplots(1, 2)
  loss_axis.plot(loss[:, 0], loss[:, 1], marker=".")
  loss_axis.set_xlabel("step")
  loss_axis.set_ylabel("train loss")
  accuracy_axis.plot(accuracy[:, 0], accuracy[:, 1], marker="o", color="C1")
  accuracy_axis.set_xlabel("step")
  accuracy_axis.set_ylabel("test accuracy")
  if title:
    figure.suptitle(title)
  return _save(figure, path)
