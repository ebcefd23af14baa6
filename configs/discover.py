"""The recipe that learns which symmetry the data have, then trains a model exactly invariant to it.

  python -m ds_symmetry.main --config=configs/discover.py --workdir=runs/discover
  python -m ds_symmetry.main --config=configs/discover.py:mirrored,32 --workdir=runs/mirrored32

What the model is told: its answer is one of the ten subgroups of the square grid's eight
isometries (rotations by multiples of 90° and mirrors), each scored by how much its network's
training loss rises on images transformed by the subgroup's elements, against a prior of
β·log|H| per subgroup in favour of larger ones (``nn.SubgroupSelector``).

Phase 1 (identification): a ``subgroup_cnn``, the plain MNIST CNN (5 blocks, kernel 5),
trains on the untransformed images while the distribution ``q`` over the ten subgroups learns
from its losses on the 8 isometries of each batch (after a 300-step warm-up). When one
subgroup holds ``q ≥ 1 − discovery.when_within`` (checked every 10 steps), that is the answer.

Phase 2 (the discovered model; ``discovery.then_train``, the default): identify, then train.
Phase 1's run ends at the commitment (in ``<workdir>/identify``), and the exact G-CNN of the
answer ``H`` (``gcnn`` with ``group=<answer>``: same width and depth, the reference G-CNN's
disk mask and init; the plain CNN for the trivial group) trains from fresh weights for the
whole budget at the same seed (in ``<workdir>/trained``): the same run as that subgroup's
fixed prior, ``configs/fixed_group.py``. It costs phase 1's steps on top of the budget. Chosen
over the single-run alternatives on the tuning seeds' validation split
(``docs/study/identification.md``):

* ``--config.discovery.then_train=False --config.discovery.keep_backbone=True``: one run; the
  selector's trained backbone ``f``, averaged over ``H``, ``y_H(x) = mean_{h∈H} f(h·x)``
  (``nn.GroupAveraged``: exactly ``H``-invariant), trains for the steps left (add
  ``--config.discovery.expand_backbone=True`` to expand it into ``H``'s G-CNN carrying its
  filters, ``models.gcnn_from_cnn``);
* ``--config.discovery.then_train=False``: one run; ``H``'s exact G-CNN from fresh weights for
  the steps left (in a 750-step budget it trails the best fixed prior by 7–21 points);
* ``--config.discovery.then_train=False --config.discovery.stop_after=True``: the run ends at
  the commitment (the identification benchmark).

Variants (``:<data>[,<channels>]``), the data and the subgroup each should yield:

  rotated           rotated MNIST, angles uniform in [0°, 360°)   → C4
  rotated_c4        rotations by multiples of 90°                 → C4
  rotated_c2        rotations by 0° or 180°                       → C2
  mirrored          a random left-right mirror, no rotation       → flip
  rotated_mirrored  multiples of 90°, then a random mirror        → D4
  upright           plain MNIST                                   → trivial
  scaled            scaled MNIST (factor in [0.3, 1])             → trivial
  partial90, partial180   the paper's partial rotations [0°, 90°] and [0°, 180°] (no
                          expected answer; judged by accuracy)

Settings (size prior, selection learning rate, warm-up, threshold) were chosen on seeds 0–4
with a validation split held out of the training images (``docs/study/identification.md``).
"""

from ml_collections import config_dict

from ds_symmetry.train.config import base_config
from ds_symmetry.train.variants import model_options

# data variant -> (protocol, protocol options, the subgroup it should yield or None)
VARIANTS = {
    "rotated": ("rotated_mnist", {}, "C4"),
    "rotated_c4": ("rotated_mnist", {"rotation_group_order": 4}, "C4"),
    "rotated_c2": ("rotated_mnist", {"rotation_group_order": 2}, "C2"),
    "mirrored": ("mnist", {"flip_probability": 0.5}, "flip"),
    "rotated_mirrored": ("rotated_mnist", {"rotation_group_order": 4, "flip_probability": 0.5},
                         "D4"),
    "upright": ("mnist", {}, "trivial"),
    "scaled": ("scaled_mnist", {}, "trivial"),
    "partial90": ("partial_rotation", {"max_angle_deg": 90.0}, None),
    "partial180": ("partial_rotation", {"max_angle_deg": 180.0}, None),
}

# The identification settings (chosen on seeds 0-4, validation split; never the test set).
SIZE_PRIOR = 0.02
SELECTION_LEARNING_RATE = 1e-1
WARMUP_STEPS = 300
WITHIN = 0.05


def parse(arg):
  """``"<data>[,<channels>]"`` → ``(data, channels)``; raises ``ValueError`` in one line."""
  parts = (arg or "rotated").split(",")
  data = parts[0] or "rotated"
  if data not in VARIANTS or len(parts) > 2:
    raise ValueError(f"config variant: {arg!r} is not accepted; expected '<data>[,<channels>]' "
                     f"with data one of {sorted(VARIANTS)}")
  channels = 16
  if len(parts) == 2:
    if not parts[1].isdigit() or int(parts[1]) < 1:
      raise ValueError(f"config variant: channels {parts[1]!r} is not accepted; expected a "
                       "positive integer")
    channels = int(parts[1])
  return data, channels


def get_config(arg=None):
  data, channels = parse(arg)
  protocol, options, _ = VARIANTS[data]
  config = base_config()
  config.model = "subgroup_cnn"
  config.model_options = model_options("subgroup_cnn", channels)
  config.model_options.size_prior = SIZE_PRIOR
  config.model_options.warmup_steps = WARMUP_STEPS
  config.protocol = protocol
  config.protocol_options = config_dict.ConfigDict(
      dict(options, validation_examples=config_dict.placeholder(int)))
  config.limit_train = 24000
  config.num_epochs = 2
  config.batch_size = 64
  config.learning_rate = 1e-3
  config.logits_learning_rate = SELECTION_LEARNING_RATE
  config.discovery.when_within = WITHIN
  config.discovery.then_train = True
  config.discovery.check_every_steps = 10
  config.eval_batch_size = 1000
  config.evals_per_epoch = 2
  config.checkpoint_every_steps = 200
  config.log_every_steps = 50
  return config
