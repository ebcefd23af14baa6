"""Partial rotations, MNIST (paper Table 3): angles in [0, 90] (variant suffix ',180' for [0, 180]).

Reference settings (docs/paper_reference.md §5): AdamW, lr 1e-2 (weights and logits), weight decay
1e-4 on every parameter, batch 64, 100 epochs, norm weight 0.1, entropy weight 0, 20 Sinkhorn
iterations, seed 0, no schedule. A full run is a GPU job.

  python -m ds_symmetry.main --config=configs/partial_rotation.py:wscnn --workdir=runs/partial_rotation_wscnn

Variants: cnn, gcnn, wscnn, with an optional channel count (gcnn16 = the paper's 103 K G-CNN).
"""

import ml_collections

from ds_symmetry.train.config import base_config
from ds_symmetry.train.variants import mnist_variant


def get_config(arg=None):
  variant, _, angle = (arg or "").partition(",")
  config = base_config()
  config.model, config.model_options = mnist_variant(variant)
  config.protocol = "partial_rotation"
  config.protocol_options = ml_collections.ConfigDict(
      {"max_angle_deg": float(angle) if angle else 90.0})
  return config
