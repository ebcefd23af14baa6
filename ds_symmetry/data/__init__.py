"""Datasets (IDX, CIFAR, TFDS) as whole uint8 arrays, and symmetry transforms in jnp.

Raw data::

  images, labels = load_dataset(name, split, *, data_dir=None)
  # name: "mnist" | "fashion_mnist" | "cifar10" | "tfds:<name>"; split: "train" | "test"
  # images uint8 [N, H, W, C], labels int32 [N]

Protocols (the paper's train/test transforms, for the trainer)::

  protocol = make_protocol(name, *, data_dir=None, seed=0, limit_train=None,
                           limit_test=None, arrays=None, **options)
  protocol.train_images / train_labels   # uint8 [N, H, W, C] / int32 [N]
  protocol.test_images / test_labels     # float32 [M, H, W, C] frozen / int32 [M]
  protocol.augment(key, uint8_batch)     # jnp, inside jit -> float32 [B, H, W, C]
  protocol.preprocess(uint8_batch)       # normalisation only
  protocol.num_classes, protocol.image_shape, protocol.name, protocol.options

Names: ``PROTOCOLS`` = mnist, rotated_mnist, partial_rotation, scaled_mnist, cifar10,
flipped_cifar10. Where data comes from: ``ds_symmetry.data.sources`` (MNIST, Fashion-MNIST),
``cifar`` and ``tfds_source``. Transforms: ``ds_symmetry.data.transforms``.
"""

from ds_symmetry.data.datasets import DATASETS, load_cifar10, load_dataset
from ds_symmetry.data.protocols import PROTOCOLS, Protocol, freeze_test_set, make_protocol
from ds_symmetry.data.sources import load_fashion_mnist, load_mnist
from ds_symmetry.data.transforms import (add_gaussian_noise, horizontal_flip, normalize,
                                         random_rotation_angles, rotate, scale, to_float)

__all__ = [
    "DATASETS", "PROTOCOLS", "Protocol", "add_gaussian_noise", "freeze_test_set",
    "horizontal_flip", "load_cifar10", "load_dataset", "load_fashion_mnist", "load_mnist",
    "make_protocol", "normalize", "random_rotation_angles", "rotate", "scale", "to_float",
]
