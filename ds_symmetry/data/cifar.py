"""CIFAR-10 readers: the official python-pickle and binary batches.

Python version (``cifar-10-batches-py/``): ``data_batch_1`` ... ``data_batch_5`` and
``test_batch``, each a pickled dict with ``b"data"`` (uint8 ``[N, 3072]``, each row the
1024 red, then 1024 green, then 1024 blue values of a 32x32 image in row-major order) and
``b"labels"`` (N ints in [0, 10)).

Binary version (``cifar-10-batches-bin/``): ``data_batch_1.bin`` ... ``data_batch_5.bin`` and
``test_batch.bin``, each a sequence of 3073-byte records: one label byte, then 3072 pixel
bytes in the same channel-major layout.

The pickle files are read without running code: :class:`SafeUnpickler` admits only the types
a CIFAR batch is made of (dicts, lists, tuples, strings, bytes, numbers and numpy arrays, whose
reconstruction it allows and nothing else), so a crafted ``data_batch_1`` that would call any
other function is refused with a ``ValueError`` naming the file and the global it asked for.
"""

from __future__ import annotations

import io
import os
import pathlib
import pickle

import numpy as np

from ds_symmetry.data import idx

IMAGE_SHAPE = (32, 32, 3)
RECORD_PIXELS = 32 * 32 * 3
RECORD_BYTES = 1 + RECORD_PIXELS
NUM_CLASSES = 10
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)


def _to_nhwc(flat: np.ndarray) -> np.ndarray:
  return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
  if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
    raise ValueError(f"{name}: labels in [{labels.min()}, {labels.max()}] found, expected "
                     f"[0, {NUM_CLASSES})")
  return labels.astype(np.int32)


# The globals a pickled numpy array needs (the official batches hold a uint8 ndarray; other
# copies may hold lists): the array reconstructor, the ndarray and dtype classes. Nothing else
# may be looked up, so no other callable can run while unpickling.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles of Python 3 store an array's bytes
}


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle asked for a global outside :data:`_ALLOWED_GLOBALS`."""


class SafeUnpickler(pickle.Unpickler):
  """An unpickler for data: builtin containers, strings, bytes, numbers and numpy arrays.

  ``find_class`` admits only numpy's array reconstruction; any other global (``os.system``,
  ``builtins.eval``, ...) raises :class:`UnsafePickleError` before it could be called.
  """

  def find_class(self, module: str, name: str):
    if (module, name) in _ALLOWED_GLOBALS:
      return super().find_class(module, name)
    raise UnsafePickleError(f"refused to load the global {module}.{name}: a CIFAR batch holds "
                            f"only arrays, lists, dicts, strings and numbers")


def safe_loads(content: bytes):
  """``pickle.loads(content, encoding="bytes")`` through :class:`SafeUnpickler`."""
  return SafeUnpickler(io.BytesIO(content), encoding="bytes").load()


def read_pickle_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Reads one python-pickle batch -> (uint8 ``[N, 32, 32, 3]``, int32 ``[N]``), without running
  code from the file (:class:`SafeUnpickler`)."""
  name = os.fspath(path)
  content = idx.read_bytes(path)
  try:
    batch = safe_loads(content)
  except UnsafePickleError as error:
    raise ValueError(f"{name}: not a CIFAR pickle batch: {error}; the file was not "
                     f"loaded") from error
  except Exception as error:  # pylint: disable=broad-except
    raise ValueError(f"{name}: not a readable CIFAR pickle batch ({len(content)} bytes): "
                     f"{type(error).__name__}: {error}") from error
  if not isinstance(batch, dict):
    raise ValueError(f"{name}: expected a pickled dict with b'data' and b'labels', found "
                     f"{type(batch).__name__}")
  data = batch.get(b"data", batch.get("data"))
  labels = batch.get(b"labels", batch.get("labels"))
  if data is None or labels is None:
    raise ValueError(f"{name}: expected keys b'data' and b'labels', found {sorted(batch)}")
  data = np.asarray(data)
  labels = np.asarray(labels)
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != RECORD_PIXELS:
    raise ValueError(f"{name}: b'data' is {data.dtype} {data.shape}, expected uint8 "
                     f"[N, {RECORD_PIXELS}]")
  if labels.shape != (data.shape[0],):
    raise ValueError(f"{name}: {labels.shape} labels for {data.shape[0]} images, expected "
                     f"({data.shape[0]},)")
  return _to_nhwc(data), _check_labels(labels, name)


def read_binary_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Reads one binary batch -> (uint8 ``[N, 32, 32, 3]``, int32 ``[N]``)."""
  name = os.fspath(path)
  content = idx.read_bytes(path)
  if not content or len(content) % RECORD_BYTES:
    raise ValueError(f"{name}: {len(content)} bytes is not a whole number of CIFAR-10 records "
                     f"of {RECORD_BYTES} bytes (1 label + {RECORD_PIXELS} pixels); "
                     "truncated or not a CIFAR-10 binary batch")
  records = np.frombuffer(content, dtype=np.uint8).reshape(-1, RECORD_BYTES)
  return _to_nhwc(records[:, 1:]), _check_labels(records[:, 0], name)


def _batch_names(split: str) -> tuple[str, ...]:
  if split == "train":
    return TRAIN_BATCHES
  if split == "test":
    return TEST_BATCHES
  raise ValueError(f"split: {split!r} is not accepted; expected 'train' or 'test'")


def candidate_dirs(root: pathlib.Path) -> list[pathlib.Path]:
  """Directories under ``root`` where CIFAR-10 batches may sit."""
  return [root, root / "cifar-10-batches-py", root / "cifar-10-batches-bin",
          root / "cifar10", root / "cifar10" / "cifar-10-batches-py",
          root / "cifar10" / "cifar-10-batches-bin"]


def load_cifar10_dir(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Loads CIFAR-10 ``split`` from pickle or binary batches found under ``root``.

  Returns:
    ``(images, labels)``: uint8 ``[N, 32, 32, 3]`` and int32 ``[N]``.

  Raises:
    FileNotFoundError: no complete set of batches under ``root``.
    ValueError: a batch is corrupt.
  """
  names = _batch_names(split)
  searched = candidate_dirs(pathlib.Path(root))
  for directory in searched:
    for suffix, reader in (("", read_pickle_batch), (".bin", read_binary_batch)):
      paths = [directory / (name + suffix) for name in names]
      if all(path.is_file() for path in paths):
        parts = [reader(path) for path in paths]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
  raise FileNotFoundError(
      f"CIFAR-10 {split} batches {list(names)} (pickle) or {[n + '.bin' for n in names]} "
      f"(binary) not found in {[str(d) for d in searched]}")
