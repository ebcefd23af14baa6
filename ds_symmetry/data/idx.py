"""Reader (and writer) for the IDX format of MNIST and Fashion-MNIST, raw or gzipped.

IDX layout (big-endian): two zero bytes, one type byte (``0x08`` = unsigned byte), one byte
giving the number of dimensions ``d``, then ``d`` uint32 sizes, then the data in C order.
MNIST image files are ``[N, 28, 28]`` (magic ``0x00000803``), label files ``[N]``
(magic ``0x00000801``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib

import numpy as np

# IDX type byte -> numpy big-endian dtype.
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_CODES = {dtype: code for code, dtype in _IDX_TYPES.items()}


def read_bytes(path: str | os.PathLike) -> bytes:
  """Returns the (decompressed) content of ``path``; gzip is detected by its magic bytes.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: a gzip file is truncated or corrupt.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such file")
  with open(path, "rb") as f:
    content = f.read()
  if content[:2] == b"\x1f\x8b":
    try:
      return gzip.decompress(content)
    except (EOFError, OSError, zlib.error) as error:
      raise ValueError(
          f"{path}: corrupt or truncated gzip file ({len(content)} bytes): {error}") from error
  return content


def sha256_hex(content: bytes) -> str:
  """The sha256 of ``content`` as 64 lowercase hex digits."""
  return hashlib.sha256(content).hexdigest()


def parse_idx(content: bytes, *, name: str = "<bytes>",
              expected_ndim: int | None = None) -> np.ndarray:
  """Parses IDX bytes into a numpy array (native byte order).

  Args:
    content: the raw (uncompressed) IDX bytes.
    name: the file name used in error messages.
    expected_ndim: if given, the number of dimensions the file must declare.

  Returns:
    An array of the declared shape, e.g. uint8 ``[N, 28, 28]`` for MNIST images.

  Raises:
    ValueError: bad magic number, unexpected number of dimensions, or a data size that does
      not match the header.
  """
  if len(content) < 4:
    raise ValueError(f"{name}: not an IDX file: {len(content)} bytes, expected a 4-byte header "
                     "(0x00 0x00 type ndim) and data")
  zero0, zero1, type_code, ndim = content[0], content[1], content[2], content[3]
  magic = int.from_bytes(content[:4], "big")
  if zero0 != 0 or zero1 != 0 or type_code not in _IDX_TYPES or ndim == 0:
    raise ValueError(f"{name}: bad IDX magic number 0x{magic:08x}; expected 0x0000TTDD with type "
                     f"TT in {[hex(t) for t in _IDX_TYPES]} and DD >= 1 dimensions "
                     "(MNIST images 0x00000803, labels 0x00000801)")
  if expected_ndim is not None and ndim != expected_ndim:
    raise ValueError(f"{name}: IDX header declares {ndim} dimension(s) (magic 0x{magic:08x}), "
                     f"expected {expected_ndim}")
  header_size = 4 + 4 * ndim
  if len(content) < header_size:
    raise ValueError(f"{name}: truncated IDX header: {len(content)} bytes, expected at least "
                     f"{header_size} for {ndim} dimensions")
  shape = struct.unpack(f">{ndim}I", content[4:header_size])
  dtype = _IDX_TYPES[type_code]
  expected_size = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(content) != expected_size:
    raise ValueError(f"{name}: IDX size mismatch: header declares shape {tuple(shape)} of "
                     f"{dtype.name} ({expected_size} bytes with header), file has "
                     f"{len(content)} bytes" + (" (truncated)" if len(content) < expected_size
                                                else " (trailing data)"))
  array = np.frombuffer(content, dtype=dtype, offset=header_size).reshape(shape)
  return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike, *, expected_ndim: int | None = None) -> np.ndarray:
  """Reads an IDX file, raw or gzipped (see :func:`parse_idx`)."""
  return parse_idx(read_bytes(path), name=os.fspath(path), expected_ndim=expected_ndim)


def encode_idx(array: np.ndarray) -> bytes:
  """The IDX bytes of ``array`` (uint8, int8, int16, int32, float32 or float64)."""
  array = np.asarray(array)
  big_endian = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
  big_endian = np.dtype(">u1") if array.dtype == np.uint8 else (
      np.dtype(">i1") if array.dtype == np.int8 else big_endian)
  if big_endian not in _TYPE_CODES:
    raise ValueError(f"array: dtype {array.dtype} has no IDX type code; accepted: "
                     "uint8, int8, int16, int32, float32, float64")
  header = bytes([0, 0, _TYPE_CODES[big_endian], array.ndim])
  header += struct.pack(f">{array.ndim}I", *array.shape)
  return header + array.astype(big_endian).tobytes(order="C")
