"""Scaled MNIST (paper Table 1): scale factors in [0.3, 1.0].

Reference settings (docs/paper_reference.md §5): AdamW, lr 1e-2 (weights and logits), weight decay
1e-4 on every parameter, batch 64, 100 epochs, norm weight 0.1, entropy weight 0, 20 Sinkhorn
iterations, seed 0, no schedule. A full run is a GPU job.

  python -m ds_symmetry.main --config=configs/scaled_mnist.py:wscnn --workdir=runs/scaled_mnist_wscnn

Variants: cnn, gcnn, wscnn, with an optional channel count (gcnn16 = the paper's 103 K G-CNN).
"""

from ds_symmetry.train.config import base_config
from ds_symmetry.train.variants import mnist_variant


def get_config(arg=None):
  config = base_config()
  config.model, config.model_options = mnist_variant(arg)
  config.protocol = "scaled_mnist"
  return config
