"""Optional TFDS source: any prepared TFDS dataset, read through ``tfds.data_source``.

``tfds.data_source`` reads prepared array_record files and works without TensorFlow. Only
when TensorFlow is importable, and the data source fails (e.g. a dataset prepared as
tfrecord), ``tfds.load(..., batch_size=-1)`` is tried. Nothing here is downloaded: prepare
the dataset first (``tfds build`` or ``builder.download_and_prepare()`` on a machine with
internet). TensorFlow is never imported at module level.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np


def _as_arrays(records, name: str, image_key: str, label_key: str):
  images, labels = [], []
  for record in records:
    if image_key not in record or label_key not in record:
      raise ValueError(f"tfds:{name}: records have keys {sorted(record)}, expected "
                       f"{image_key!r} and {label_key!r}")
    images.append(np.asarray(record[image_key]))
    labels.append(np.asarray(record[label_key]))
  if not images:
    raise ValueError(f"tfds:{name}: the split is empty")
  images = np.stack(images)
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype != np.uint8:
    raise ValueError(f"tfds:{name}: images are {images.dtype}, expected uint8")
  return images, np.asarray(labels).astype(np.int32)


def load_tfds(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
              image_key: str = "image", label_key: str = "label"
              ) -> tuple[np.ndarray, np.ndarray]:
  """Loads a prepared TFDS dataset split into memory.

  Args:
    name: the TFDS name, e.g. ``"cifar10"`` or ``"mnist:3.0.1"``.
    split: a TFDS split, e.g. ``"train"``, ``"test"``, ``"train[:1000]"``.
    data_dir: the TFDS data directory (default: TFDS's own, ``~/tensorflow_datasets``).

  Returns:
    ``(images, labels)``: uint8 ``[N, H, W, C]`` and int32 ``[N]``.

  Raises:
    FileNotFoundError: the dataset is not prepared there (nothing is downloaded).
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  data_dir = os.fspath(data_dir) if data_dir is not None else None
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    indices = list(range(len(source)))
    try:
      records = []
      for start in range(0, len(indices), 4096):
        records.extend(source.__getitems__(indices[start:start + 4096]))
    except (TypeError, AttributeError):
      records = [source[i] for i in indices]
    return _as_arrays(records, name, image_key, label_key)
  except ValueError:
    raise
  except Exception as error:  # pylint: disable=broad-except
    source_error = f"tfds.data_source: {type(error).__name__}: {error}"
  if importlib.util.find_spec("tensorflow") is not None:
    try:
      data = tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir, batch_size=-1,
                                     download=False))
      return _as_arrays([{image_key: image, label_key: label} for image, label in
                         zip(data[image_key], data[label_key])], name, image_key, label_key)
    except Exception as error:  # pylint: disable=broad-except
      source_error = f"{source_error}; tfds.load: {type(error).__name__}: {error}"
  raise FileNotFoundError(
      f"tfds:{name} split {split!r} is not prepared in {data_dir or 'the TFDS default data dir'}"
      f" ({source_error}). Prepare it first (e.g. `tfds build {name}` on a machine with internet).")
