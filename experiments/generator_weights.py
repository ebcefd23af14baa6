"""The mass of a run's lifting generator on each grid isometry (docs/learning_the_group.md §9).

  python -m experiments.generator_weights results/settings_search/pd32_*

For each run directory it reads the final lifting stack (``stacks.npz``, layer ``convs/0``,
through ``run_files.load_stacks``) and prints the convex decomposition (``analysis.convex_decomposition``) of
its element 1, the generator, over the 8 isometries of the kernel grid: e, r, r², r³ (rotations
by 0/90/180/270°) and the four reflections f0…f3.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from ds_symmetry import run_files
from ds_symmetry.analysis import convex_decomposition
from ds_symmetry.ops import groups

NAMES = ("e", "r", "r2", "r3", "f0", "f1", "f2", "f3")


def generator_weights(workdir: str) -> np.ndarray:
  """``[8]`` non-negative weights summing to one, in ``NAMES`` order."""
  loaded = run_files.load_stacks(workdir)
  if loaded is None:
    raise FileNotFoundError(f"{run_files.path(workdir, run_files.STACKS)}: no such file")
  generator = loaded[0]["convs/0"][1]
  kernel_size = int(round(np.sqrt(generator.shape[-1])))
  return convex_decomposition(generator, groups.spatial_permutations("D4", kernel_size))


def main(argv=None) -> int:
  workdirs = sys.argv[1:] if argv is None else argv
  if not workdirs:
    print(__doc__)
    return 2
  for workdir in workdirs:
    weights = generator_weights(workdir)
    print(f"{os.path.basename(os.path.normpath(workdir))}: "
          + " ".join(f"{name} {value:.2f}" for name, value in zip(NAMES, weights)))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
