"""Augmentation cost: batches/second of the data path that feeds a train step.

Compares, at batch 64 and 512, on 60,000 uint8 MNIST-sized images held on the device:

  * ``gather+normalise (jit)``: index the device array, to float, normalise (the ``mnist``
    protocol; the floor of any data path);
  * ``gather+rotate+normalise (jit)``: the same plus a fresh random bilinear rotation per image
    (``rotated_mnist``'s ``protocol.augment``), all in one jitted function as in the train step;
  * ``gather+scale+normalise (jit)``: ``scaled_mnist``'s augmentation;
  * ``scipy.ndimage.rotate loader (CPU)``: the classic host loader, one
    ``scipy.ndimage.rotate(order=1, reshape=False)`` per image in numpy, then ``device_put``.

``augment_ms`` is the time a method adds over the plain gather+normalise; compare it with the
model's train step (a wscnn step at batch 64 is ~300-400 ms on a 2-core CPU) for the issue's
"augmentation adds at most 10% to a step" target.

Run: ``python -m benchmarks.run augmentation`` or ``python -m benchmarks.augmentation``.
"""

from __future__ import annotations

import sys

import ds_symmetry  # noqa: F401  (fast CPU convolution flag, before jax starts)
import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage

from benchmarks import common
from ds_symmetry import data

TITLE = "Augmentation: batches/s of gather + transform + normalise (MNIST 28x28x1)"
COLUMNS = ["method", "batch", "ms_per_batch", "batches_per_s", "augment_ms",
           "x_slower_than_plain", "x_faster_than_scipy"]
NUM_IMAGES = 60000


def _arrays():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (NUM_IMAGES, 28, 28, 1), dtype=np.uint8)
  labels = rng.integers(0, 10, (NUM_IMAGES,)).astype(np.int32)
  return images, labels, images[:16], labels[:16]


def _jitted_path(protocol, batch):
  @jax.jit
  def next_batch(key, images):
    index_key, augment_key = jax.random.split(key)
    indices = jax.random.randint(index_key, (batch,), 0, images.shape[0])
    return protocol.augment(augment_key, images[indices])
  return next_batch


def _scipy_loader(images, batch, rng):
  indices = rng.integers(0, len(images), batch)
  angles = rng.uniform(0.0, 360.0, batch)
  floats = images[indices, ..., 0].astype(np.float32) / 255.0
  out = np.empty_like(floats)
  for i in range(batch):
    out[i] = scipy.ndimage.rotate(floats[i], angles[i], reshape=False, order=1, mode="constant",
                                  cval=0.0)
  return jax.device_put((out[..., None] - 0.1307) / 0.3081)


def run(quick: bool = False) -> list[dict]:
  arrays = _arrays()
  protocols = {name: data.make_protocol(name, arrays=arrays, seed=0)
               for name in ("mnist", "rotated_mnist", "scaled_mnist")}
  device_images = jax.device_put(arrays[0])
  repeats = 5 if quick else 20
  rows = []
  for batch in (64, 512):
    timings = {}
    keys = iter(jax.random.split(jax.random.key(0), 10_000))
    for label, name in (("gather+normalise (jit)", "mnist"),
                        ("gather+rotate+normalise (jit)", "rotated_mnist"),
                        ("gather+scale+normalise (jit)", "scaled_mnist")):
      step = _jitted_path(protocols[name], batch)
      timings[label] = common.median_time(lambda: step(next(keys), device_images),
                                          repeats=repeats, warmup=2)
    rng = np.random.default_rng(1)
    timings["scipy.ndimage.rotate loader (CPU)"] = common.median_time(
        lambda: _scipy_loader(arrays[0], batch, rng), repeats=max(3, repeats // 4), warmup=1)
    plain = timings["gather+normalise (jit)"]
    scipy_time = timings["scipy.ndimage.rotate loader (CPU)"]
    for label, seconds in timings.items():
      rows.append({
          "method": label, "batch": batch, "ms_per_batch": 1e3 * seconds,
          "batches_per_s": 1.0 / seconds, "augment_ms": 1e3 * (seconds - plain),
          "x_slower_than_plain": seconds / plain, "x_faster_than_scipy": scipy_time / seconds,
      })
  return rows


def main() -> int:
  quick = "--quick" in sys.argv[1:]
  print(f"device: {common.device_description()}")
  rows = run(quick=quick)
  print(f"\n== {TITLE} ==")
  print(common.format_table(rows, COLUMNS))
  for batch in (64, 512):
    by_method = {r["method"]: r for r in rows if r["batch"] == batch}
    rotate = by_method["gather+rotate+normalise (jit)"]
    print(f"batch {batch}: rotation augmentation adds {rotate['augment_ms']:.2f} ms per batch "
          f"({rotate['x_faster_than_scipy']:.1f}x faster than the scipy loader)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
