"""Plain MNIST (no symmetry transform), the control for what a learned model finds where the
data have no rotations. Same models and settings as ``configs/rotated_mnist.py``.

  python -m ds_symmetry.main --config=configs/mnist.py:wscnn --workdir=runs/mnist_wscnn

Variants: cnn, gcnn, wscnn, with an optional channel count (e.g. wscnn16).
"""

from ds_symmetry.train.config import base_config
from ds_symmetry.train.variants import mnist_variant


def get_config(arg=None):
  config = base_config()
  config.model, config.model_options = mnist_variant(arg)
  config.protocol = "mnist"
  return config
