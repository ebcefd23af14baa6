"""The independent check of the identification benchmark: a plain CNN trained on a data
variant, whose held-out loss on every isometry of the images says which ones the data have
(``ds_symmetry.analysis.invariance``).

  python -m ds_symmetry.main --config=configs/invariance_test.py:mirrored --workdir=runs/inv

A 32-channel MNIST CNN, 300 steps at batch 64 and learning rate 1e-3 on the first 24k training
images, evaluated on the last 5k training images transformed once (``validation_examples``),
never on the test set. ``python -m experiments.identification report`` then reads the ratios.
Variants: the data variants of ``configs/discover.py``.
"""

from ml_collections import config_dict

from configs.discover import VARIANTS, parse
from ds_symmetry.train.config import base_config
from ds_symmetry.train.variants import model_options

VALIDATION_EXAMPLES = 5000


def get_config(arg=None):
  data, channels = parse(arg if arg and "," in arg else f"{arg or 'rotated'},32")
  protocol, options, _ = VARIANTS[data]
  config = base_config()
  config.model = "cnn"
  config.model_options = model_options("cnn", channels)
  config.protocol = protocol
  config.protocol_options = config_dict.ConfigDict(
      dict(options, validation_examples=VALIDATION_EXAMPLES))
  config.limit_train = 24000
  config.num_train_steps = 300
  config.batch_size = 64
  config.learning_rate = 1e-3
  config.eval_batch_size = 1000
  config.checkpoint_every_steps = 300
  config.log_every_steps = 100
  return config
