"""A fixed prior on a data variant of ``configs/discover.py``: the CNN or the exact G-CNN of a
named subgroup of D4, trained exactly as the discovery recipe trains (same images, steps,
batch, learning rate, evaluation), so it is the baseline the discovered model is compared to.

  python -m ds_symmetry.main --config=configs/fixed_group.py:mirrored,flip --workdir=runs/flip
  python -m ds_symmetry.main --config=configs/fixed_group.py:mirrored,cnn,32 --workdir=runs/cnn

Variant ``<data>,<model>[,<channels>]``: ``data`` one of ``configs/discover.py``'s variants,
``model`` either ``cnn`` (the plain MNIST CNN at ``channels``) or a subgroup name of
``ops.D4_SUBGROUPS`` (the G-CNN the recipe would round to if it found that subgroup:
``models.exact_model_options``, the reference G-CNN's disk mask and init), ``channels``
16 by default. What the model is told: the CNN nothing; a G-CNN that its answer is the named
subgroup.
"""

from configs import discover
from ds_symmetry.ops import D4_SUBGROUPS
from ds_symmetry.train.variants import answer_config


def parse(arg):
  """``"<data>,<model>[,<channels>]"`` → ``(data, model, channels)``; one-line ``ValueError``."""
  parts = (arg or "").split(",")
  if len(parts) not in (2, 3):
    raise ValueError(f"config variant: {arg!r} is not accepted; expected "
                     "'<data>,<model>[,<channels>]' with model 'cnn' or a subgroup of D4")
  data, model = parts[0], parts[1]
  if model != "cnn" and model not in D4_SUBGROUPS:
    raise ValueError(f"config variant: model {model!r} is not accepted; expected 'cnn' or one "
                     f"of {list(D4_SUBGROUPS)}")
  _, channels = discover.parse(",".join([data] + parts[2:]))
  return data, model, channels


def get_config(arg=None):
  data, model, channels = parse(arg)
  # The discovery recipe's protocol and optimisation; only the model changes (the same config
  # as discovery.then_train's second stage for that answer; "cnn" for the trivial group).
  return answer_config(discover.get_config(f"{data},{channels}"), model)
