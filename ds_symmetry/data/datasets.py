"""One entry point for raw datasets: ``load_dataset(name, split, *, data_dir=None)``."""

from __future__ import annotations

import os

import numpy as np

from ds_symmetry.data import cifar, sources, tfds_source

DATASETS = ("mnist", "fashion_mnist", "cifar10")


def load_cifar10(split: str, *, data_dir: str | os.PathLike | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
  """CIFAR-10 from pickle/binary batches under ``data_dir``/``$DS_SYMMETRY_DATA`` or the
  cache root (``~/.cache/ds_symmetry``), else a prepared TFDS ``cifar10`` (in ``data_dir`` or
  TFDS's default directory).

  Returns:
    ``(images, labels)``: uint8 ``[N, 32, 32, 3]`` and int32 ``[N]``.
  """
  if split not in ("train", "test"):
    raise ValueError(f"split: {split!r} is not accepted; expected 'train' or 'test'")
  attempts = []
  roots = [r for r in (sources.data_root(data_dir), sources.cache_root()) if r is not None]
  for root in roots:
    try:
      return cifar.load_cifar10_dir(root, split)
    except FileNotFoundError as error:
      attempts.append(str(error))
  try:
    images, labels = tfds_source.load_tfds("cifar10", split, data_dir=data_dir)
  except FileNotFoundError as error:
    attempts.append(str(error))
  else:
    if images.shape[1:] != cifar.IMAGE_SHAPE:
      raise ValueError(f"tfds:cifar10: images of shape {images.shape[1:]}, expected "
                       f"{cifar.IMAGE_SHAPE}")
    return images, labels
  raise FileNotFoundError(
      "CIFAR-10 could not be loaded. Tried:\n  - " + "\n  - ".join(attempts) +
      "\nExtract cifar-10-python.tar.gz (or cifar-10-binary.tar.gz) from "
      "https://www.cs.toronto.edu/~kriz/cifar.html into a directory and pass it as data_dir "
      f"or set ${sources.DATA_ENV}.")


def load_dataset(name: str, split: str, *, data_dir: str | os.PathLike | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Loads a whole dataset split into memory.

  Args:
    name: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, or ``"tfds:<name>"`` for any
      TFDS dataset already prepared (read with ``tfds.data_source``; nothing downloaded).
    split: ``"train"`` or ``"test"`` (any TFDS split string for ``tfds:`` names).
    data_dir: a local directory to read from (default ``$DS_SYMMETRY_DATA``; for ``tfds:``
      names, the TFDS data directory).

  Returns:
    ``(images, labels)``: uint8 ``[N, H, W, C]`` (C=1 for the MNISTs) and int32 ``[N]``.
  """
  if name.startswith("tfds:"):
    return tfds_source.load_tfds(name[len("tfds:"):], split, data_dir=data_dir)
  if name == "mnist":
    return sources.load_mnist(split, data_dir=data_dir)
  if name == "fashion_mnist":
    return sources.load_fashion_mnist(split, data_dir=data_dir)
  if name == "cifar10":
    return load_cifar10(split, data_dir=data_dir)
  raise ValueError(f"name: {name!r} is not a known dataset; expected one of {list(DATASETS)} "
                   "or 'tfds:<name>'")
