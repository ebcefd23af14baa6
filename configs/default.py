"""The main job: learn which symmetry rotated MNIST has, then train a model invariant to it.

  python -m ds_symmetry.main --config=configs/default.py --workdir=runs/default

This is the named recipe, ``configs/discover.py`` (read it for what the model is told and how
it decides), on rotated MNIST at 16 channels: the first 24k training images, 2 epochs at batch
64 (750 steps). Phase 1, a ``subgroup_cnn``, commits to one of the ten subgroups of the kernel
grid's isometries (C4 is the expected answer: reflections are not symmetries of digits) and
ends there (``<workdir>/identify``); phase 2 trains that subgroup's exact G-CNN from fresh
weights for the whole 750 steps (``<workdir>/trained``). The report names the group, the step
at which it was found, and the G-CNN's test accuracy.
"""

from configs import discover


def get_config(arg=None):
  return discover.get_config(arg or "rotated")
