"""One-call summary of a learned stack, for reports and metric logs."""

from __future__ import annotations

from typing import Dict, Union

import numpy as np

from ds_symmetry.analysis.groups import DEFAULT_THRESHOLD, cayley_error, identify_group
from ds_symmetry.analysis.permutations import check_stack, nearest_permutations


def summarize_stack(stack, kernel_size: int, kind: str = "lift",
                    threshold: float = DEFAULT_THRESHOLD) -> Dict[str, Union[float, int, str]]:
  """What a learned stack became, as a flat JSON-serialisable dict.

  Args:
    stack: ``[n, d, d]`` learned representation stack (jax or numpy).
    kernel_size: k (``d = k²`` for ``kind="lift"``, ``d = n·k²`` for ``kind="group"``).
    kind: ``"lift"`` or ``"group"``.
    threshold: passed to :func:`identify_group`.

  Returns:
    A dict with Python scalars only:

    * ``kind`` (str), ``stack_size`` (int n), ``dim`` (int d);
    * ``group``: the identified group name, or ``"none"``;
    * ``group_distance``: its score (or the best comparable candidate's score when
      ``group == "none"``; NaN if no candidate was comparable, e.g. ``kind="group"`` with a
      stack size that is no group's order);
    * ``best_candidate``: the closest comparable group name (or ``"none"``);
    * ``mean_permutation_distance`` / ``max_permutation_distance``: distances of the elements
      to their nearest permutation matrices;
    * ``cayley_max_error`` / ``cayley_mean_error``: see :func:`cayley_error`;
    * ``distance_<group>``: the score of every comparable group (keys depend only on
      ``n``, ``kind``, so they are stable over a training run);
    * ``subset_distance_<group>``: for groups larger than the stack (lift only).
  """
  array = check_stack(stack, "stack")
  match = identify_group(array, kernel_size, kind, threshold=threshold)
  _, permutation_distances = nearest_permutations(array)
  cayley = cayley_error(array)
  summary: Dict[str, Union[float, int, str]] = {
      "kind": kind,
      "stack_size": int(array.shape[0]),
      "dim": int(array.shape[-1]),
      "group": match.name if match.name is not None else "none",
      "group_distance": float(match.distance) if np.isfinite(match.distance) else float("nan"),
      "best_candidate": match.best_candidate if match.best_candidate is not None else "none",
      "mean_permutation_distance": float(np.mean(permutation_distances)),
      "max_permutation_distance": float(np.max(permutation_distances)),
      "cayley_max_error": cayley.max_error,
      "cayley_mean_error": cayley.mean_error,
  }
  for name, value in match.candidates.items():
    if np.isfinite(value):
      summary[f"distance_{name}"] = float(value)
  for name, value in match.subset_distances.items():
    summary[f"subset_distance_{name}"] = float(value)
  return summary
