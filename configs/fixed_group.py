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
from ds_symmetry.models.factory import exact_model_options
from ds_symmetry.ops import D4_SUBGROUPS
from ds_symmetry.train.variants import model_options


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
  config = discover.get_config(f"{data},{channels}")
  # The discovery recipe's protocol and optimisation; only the model changes.
  config.logits_learning_rate = 1e-2  # base_config's; these models have no logits
  config.discovery.when_within = 0.0
  config.discovery.keep_backbone = False
  if model == "cnn":
    config.model = "cnn"
    config.model_options = model_options("cnn", channels)
  else:
    name, options = exact_model_options(
        "subgroup_cnn", discover.get_config(f"{data},{channels}").model_options.to_dict(), model)
    config.model = name
    defaults = model_options(name, channels)
    for key, value in options.items():
      defaults[key] = value
    config.model_options = defaults
  return config
