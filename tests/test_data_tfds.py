"""The optional TFDS source through ``tfds.data_source`` with mocked data (no TensorFlow)."""

import numpy as np
import pytest

from ds_symmetry import data

tfds = pytest.importorskip("tensorflow_datasets")


def test_tfds_mock_cifar10_through_data_source():
  with tfds.testing.mock_data(num_examples=6):
    images, labels = data.load_dataset("tfds:cifar10", "train")
    cifar_images, _ = data.load_cifar10("test", data_dir="/nonexistent-ds-symmetry")
  assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
  assert labels.shape == (6,) and labels.dtype == np.int32
  assert labels.min() >= 0 and labels.max() < 10
  assert cifar_images.shape == (6, 32, 32, 3)


def test_tfds_unprepared_dataset_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"tfds:mnist .*not prepared"):
    data.load_dataset("tfds:mnist", "train", data_dir=tmp_path)
