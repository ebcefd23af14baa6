"""CIFAR-10 with random horizontal flips on train and test (paper Table 4).

Reference settings (docs/paper_reference.md §5): AdamW, lr 1e-4 for weights and 1e-2 for the
representation logits, weight decay 1e-4 on every parameter, batch 128, 200 epochs, norm weight
0.1, entropy weight 0, 20 Sinkhorn iterations, seed 0, no schedule. A GPU job.

  python -m ds_symmetry.main --config=configs/flipped_cifar10.py:wsresnet --workdir=runs/flipped_cifar10_wsresnet \
      --config.data_dir=/path/to/cifar-10-batches-py

Variants: resnet, gresnet, wsresnet, with an optional channel count (resnet64, resnet128).
"""

from ds_symmetry.train.config import cifar_config
from ds_symmetry.train.variants import cifar_variant


def get_config(arg=None):
  config = cifar_config()
  config.model, config.model_options = cifar_variant(arg)
  config.protocol = "flipped_cifar10"
  return config
