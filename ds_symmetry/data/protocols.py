"""The paper's data protocols: whole datasets as arrays plus a jnp augmentation.

Usage (what the trainer calls)::

  protocol = make_protocol("rotated_mnist", data_dir=None, seed=0, limit_train=None)
  train_images = jax.device_put(protocol.train_images)  # uint8 [N, H, W, C], once, whole
  ...
  # inside the jitted train step:
  batch = protocol.augment(key, train_images[indices])  # float32 [B, H, W, C], normalised
  ...
  protocol.test_images, protocol.test_labels  # float32 [M, H, W, C], frozen; int32 [M]

A ``Protocol`` has ``name``, ``train_images`` (uint8 numpy ``[N, H, W, C]``), ``train_labels``
(int32 ``[N]``), ``test_images`` (float32 numpy ``[M, H, W, C]``: already transformed,
normalised and noised, frozen once from the seed), ``test_labels`` (int32 ``[M]``),
``num_classes``, ``image_shape`` (``(H, W, C)``), ``options`` (the resolved options), and two
pure-jnp methods, safe inside ``jax.jit``:

  * ``augment(key, uint8_batch) -> float32``: the protocol's random symmetry transform (fresh
    per call), then normalisation. This is how train batches are made.
  * ``preprocess(uint8_batch) -> float32``: normalisation only (e.g. to evaluate on the
    untransformed train images).

Protocols (name: what train and test get; options with defaults):

  * ``mnist``: plain MNIST, normalised with (0.1307, 0.3081). Option ``flip_probability=0``:
    with ``0.5``, *mirrored MNIST* (a random left-right mirror per draw; test mirrored once).
  * ``rotated_mnist``: train: a fresh rotation per draw, uniform in [0, 360 deg); test: the
    test set rotated once, normalised, plus Gaussian noise ``test_noise_std=0.01``, frozen.
    Options ``max_angle_deg=360``, ``rotation_group_order=None`` (``n`` restricts angles to the
    multiples of 360/n, i.e. C_n), ``flip_probability=0`` (then a random left-right mirror:
    ``rotation_group_order=4, flip_probability=0.5`` is D4, the square's isometries).
  * ``partial_rotation``: as ``rotated_mnist`` with angles in [0, ``max_angle_deg``] (default
    90) on train and test (the paper's Table 3 uses 90 and 180).
  * ``scaled_mnist``: factor ~ U[``min_scale=0.3``, ``max_scale=1.0``], resize + centred paste
    (see ``transforms.scale``); test scaled once, frozen, no noise.
  * ``cifar10``: per-channel normalisation, no augmentation.
  * ``flipped_cifar10``: random horizontal flips (``flip_probability=0.5``) on train and test;
    the test set flipped once, frozen.

Common keyword arguments of ``make_protocol``: ``data_dir`` (see ``load_dataset``), ``seed``
(the frozen test set depends on it; option ``test_seed`` overrides it, e.g. to share one
test set across seeds like the reference code), ``limit_train`` / ``limit_test`` (keep the
first N examples), ``arrays=(train_images, train_labels, test_images, test_labels)`` to use
in-memory uint8 data instead of reading files. MNIST protocols accept
``dataset="fashion_mnist"``; every protocol accepts ``test_noise_std``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ds_symmetry.data import datasets
from ds_symmetry.data import transforms

_STATS = {
    "mnist": (transforms.MNIST_MEAN, transforms.MNIST_STD),
    "fashion_mnist": (transforms.FASHION_MNIST_MEAN, transforms.FASHION_MNIST_STD),
    "cifar10": (transforms.CIFAR10_MEAN, transforms.CIFAR10_STD),
}

# name -> (default dataset, accepted datasets, default options)
_PROTOCOLS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "mnist": ("mnist", ("mnist", "fashion_mnist"), {"flip_probability": 0.0,
                                                    "test_noise_std": 0.0}),
    "rotated_mnist": ("mnist", ("mnist", "fashion_mnist"),
                      {"max_angle_deg": 360.0, "rotation_group_order": None,
                       "flip_probability": 0.0, "test_noise_std": 0.01}),
    "partial_rotation": ("mnist", ("mnist", "fashion_mnist"),
                         {"max_angle_deg": 90.0, "rotation_group_order": None,
                          "test_noise_std": 0.01}),
    "scaled_mnist": ("mnist", ("mnist", "fashion_mnist"),
                     {"min_scale": 0.3, "max_scale": 1.0, "antialias": True,
                      "test_noise_std": 0.0}),
    "cifar10": ("cifar10", ("cifar10",), {"test_noise_std": 0.0}),
    "flipped_cifar10": ("cifar10", ("cifar10",),
                        {"flip_probability": 0.5, "test_noise_std": 0.0}),
}
PROTOCOLS = tuple(_PROTOCOLS)
_TEST_CHUNK = 2048


def protocol_options(name: str) -> dict[str, Any]:
  """Every option protocol ``name`` accepts (``make_protocol(name, **options)``, the trainer's
  ``config.protocol_options``) with its default: the protocol's own (module docstring),
  ``dataset``, ``test_seed`` and ``validation_examples``."""
  if name not in _PROTOCOLS:
    raise ValueError(f"name: {name!r} is not a known protocol; expected one of {PROTOCOLS}")
  default_dataset, _, defaults = _PROTOCOLS[name]
  return dict(defaults, dataset=default_dataset, test_seed=None, validation_examples=None)


@dataclasses.dataclass(frozen=True, eq=False)
class Protocol:
  """A dataset with its symmetry protocol (see the module docstring)."""
  name: str
  train_images: np.ndarray  # uint8 [N, H, W, C]
  train_labels: np.ndarray  # int32 [N]
  test_images: np.ndarray  # float32 [M, H, W, C], transformed + normalised + noised, frozen
  test_labels: np.ndarray  # int32 [M]
  num_classes: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  options: dict[str, Any]
  random_transform: Callable[[jax.Array, jax.Array], jax.Array] | None = dataclasses.field(
      repr=False, default=None)  # (key, float [B,H,W,C] in [0,1]) -> same; None = identity

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train_images.shape[1:])

  def preprocess(self, images: jax.Array) -> jax.Array:
    """uint8 ``[B, H, W, C]`` -> float32 normalised, no random transform."""
    return _augment(None, self.mean, self.std, None, images)

  def augment(self, key: jax.Array, images: jax.Array) -> jax.Array:
    """uint8 ``[B, H, W, C]`` -> float32 ``[B, H, W, C]``: random transform, then normalise.

    Pure jnp; call it inside the jitted train step with a fresh key per step.
    """
    return _augment(self.random_transform, self.mean, self.std, key, images)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _augment(transform, mean, std, key, images):
  floats = transforms.to_float(images)
  if transform is not None:
    floats = transform(key, floats)
  return transforms.normalize(floats, mean, std)


@functools.lru_cache(maxsize=None)  # same options -> same function -> no recompile
def _rotation_transform(max_angle_deg, rotation_group_order):
  def transform(key, images):
    angles = transforms.random_rotation_angles(
        key, images.shape[0], max_angle_deg=max_angle_deg,
        rotation_group_order=rotation_group_order)
    return transforms.rotate(images, angles)
  return transform


@functools.lru_cache(maxsize=None)  # same options -> same function -> no recompile
def _scale_transform(min_scale, max_scale, antialias):
  def transform(key, images):
    factors = jax.random.uniform(key, (images.shape[0],), jnp.float32, min_scale, max_scale)
    return transforms.scale(images, factors, antialias=antialias)
  return transform


@functools.lru_cache(maxsize=None)  # same options -> same function -> no recompile
def _flip_transform(flip_probability):
  def transform(key, images):
    flags = jax.random.bernoulli(key, flip_probability, (images.shape[0],))
    return transforms.horizontal_flip(images, flags)
  return transform


@functools.lru_cache(maxsize=None)  # same options -> same function -> no recompile
def _then_flip(transform, flip_probability):
  """``transform`` (or nothing), then a random left-right mirror with ``flip_probability``."""
  flip = _flip_transform(flip_probability)

  def composed(key, images):
    first, second = jax.random.split(key)
    return flip(second, images if transform is None else transform(first, images))
  return composed


def _build_transform(name: str, options: dict[str, Any]):
  probability = float(options.get("flip_probability", 0.0))
  if not 0.0 <= probability <= 1.0:
    raise ValueError(f"flip_probability: {probability} is not accepted; expected [0, 1]")
  transform = _build_symmetry_transform(name, options)
  if name in ("mnist", "rotated_mnist") and probability > 0.0:
    return _then_flip(transform, probability)
  return transform


def _build_symmetry_transform(name: str, options: dict[str, Any]):
  if name in ("rotated_mnist", "partial_rotation"):
    max_angle = float(options["max_angle_deg"])
    if not 0.0 < max_angle <= 360.0:
      raise ValueError(f"max_angle_deg: {max_angle} is not accepted; expected (0, 360]")
    order = options["rotation_group_order"]
    if order is not None and (int(order) != order or order < 1):
      raise ValueError(f"rotation_group_order: {order!r} is not accepted; expected None or a "
                       "positive integer")
    return _rotation_transform(max_angle, None if order is None else int(order))
  if name == "scaled_mnist":
    low, high = float(options["min_scale"]), float(options["max_scale"])
    if not 0.0 < low <= high <= 1.0:
      raise ValueError(f"min_scale/max_scale: {low}/{high} are not accepted; expected "
                       "0 < min_scale <= max_scale <= 1")
    return _scale_transform(low, high, bool(options["antialias"]))
  if name == "flipped_cifar10":
    return _flip_transform(float(options["flip_probability"]))
  return None


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _freeze_chunk(transform, key, chunk, indices, mean, std, noise_std):
  def one(index, image):
    transform_key, noise_key = jax.random.split(jax.random.fold_in(key, index))
    floats = transforms.to_float(image[None])
    if transform is not None:
      floats = transform(transform_key, floats)
    out = transforms.normalize(floats, mean, std)
    return transforms.add_gaussian_noise(noise_key, out, noise_std)[0]  # std 0: exact no-op
  return jax.vmap(one)(indices, chunk)


def freeze_test_set(images: np.ndarray, *, seed: int, transform, mean, std,
                    noise_std: float) -> np.ndarray:
  """Transforms, normalises and noises ``images`` (uint8) once, deterministically from ``seed``.

  Image ``i`` gets its own key ``fold_in(key(seed), i)``, so it is transformed the same way
  whatever ``limit_test`` or chunking is used. Returns float32 numpy ``[M, H, W, C]``.
  """
  key = jax.random.fold_in(jax.random.key(seed), 0x7E57)
  pieces = []
  for start in range(0, len(images), _TEST_CHUNK):
    chunk = images[start:start + _TEST_CHUNK]
    size = len(chunk)
    if size < _TEST_CHUNK and len(images) > _TEST_CHUNK:  # pad: one compiled shape
      chunk = np.concatenate([chunk, np.zeros((_TEST_CHUNK - size,) + chunk.shape[1:],
                                              chunk.dtype)])
    indices = jnp.arange(start, start + len(chunk), dtype=jnp.uint32)
    out = _freeze_chunk(transform, key, jnp.asarray(chunk), indices, tuple(mean), tuple(std),
                        jnp.float32(noise_std))
    pieces.append(np.asarray(out)[:size])
  if not pieces:
    return np.zeros((0,) + images.shape[1:], np.float32)
  return np.concatenate(pieces).astype(np.float32)


def _limit(images, labels, limit, name):
  if limit is None:
    return images, labels
  if int(limit) != limit or limit < 1:
    raise ValueError(f"{name}: {limit!r} is not accepted; expected None or a positive integer")
  return images[:int(limit)], labels[:int(limit)]


def make_protocol(name: str, *, data_dir: str | os.PathLike | None = None, seed: int = 0,
                  limit_train: int | None = None, limit_test: int | None = None,
                  arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
                  validation_examples: int | None = None, **options: Any) -> Protocol:
  """Builds a protocol (see the module docstring for names and options).

  Args:
    name: one of ``PROTOCOLS``.
    data_dir: where the raw dataset is (see ``ds_symmetry.data.load_dataset``).
    seed: seeds the frozen test set (unless ``test_seed`` is given among the options).
    limit_train, limit_test: keep only the first N train / test examples.
    arrays: optional in-memory ``(train_images, train_labels, test_images, test_labels)``,
      uint8 ``[N, H, W, C]`` and int labels, used instead of loading the dataset.
    validation_examples: hold out the *last* N training images as the evaluation set, in
      place of the test set (transformed, normalised and noised once, like the test set);
      ``limit_train`` then applies to the images before them. For choosing settings without
      looking at the test set.
    **options: protocol options, e.g. ``max_angle_deg=90``, ``rotation_group_order=4``,
      ``min_scale=0.3``, ``test_noise_std=0.01``, ``dataset="fashion_mnist"``,
      ``test_seed=0``.

  Returns:
    A :class:`Protocol`.
  """
  if name not in _PROTOCOLS:
    raise ValueError(f"name: {name!r} is not a known protocol; expected one of {PROTOCOLS}")
  default_dataset, accepted_datasets, defaults = _PROTOCOLS[name]
  dataset = options.pop("dataset", default_dataset)
  if dataset not in accepted_datasets:
    raise ValueError(f"dataset: {dataset!r} is not accepted by protocol {name!r}; expected one "
                     f"of {accepted_datasets}")
  test_seed = options.pop("test_seed", None)
  unknown = sorted(set(options) - set(defaults))
  if unknown:
    raise ValueError(f"options: {unknown} not accepted by protocol {name!r}; accepted: "
                     f"{sorted(protocol_options(name))}")
  resolved = dict(defaults, **options)
  transform = _build_transform(name, resolved)
  noise_std = float(resolved["test_noise_std"])
  if not noise_std >= 0.0 or math.isinf(noise_std):
    raise ValueError(f"test_noise_std: {noise_std} is not accepted; expected a finite value >= 0")

  if arrays is None:
    train_images, train_labels = datasets.load_dataset(dataset, "train", data_dir=data_dir)
    test_images, test_labels = datasets.load_dataset(dataset, "test", data_dir=data_dir)
  else:
    if len(arrays) != 4:
      raise ValueError("arrays: expected (train_images, train_labels, test_images, test_labels)")
    train_images, train_labels, test_images, test_labels = (np.asarray(a) for a in arrays)
    for label, images in (("train_images", train_images), ("test_images", test_images)):
      if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"arrays: {label} is {images.dtype} {images.shape}, expected uint8 "
                         "[N, H, W, C]")
    train_labels = train_labels.astype(np.int32)
    test_labels = test_labels.astype(np.int32)
  if validation_examples is not None:
    count = validation_examples
    if int(count) != count or not 0 < count < len(train_images):
      raise ValueError(f"validation_examples: {count!r} is not accepted; expected None or an "
                       f"integer in [1, {len(train_images) - 1}]")
    # The held-out images replace the test set: settings are chosen on them, never on test.
    test_images, test_labels = train_images[-int(count):], train_labels[-int(count):]
    train_images, train_labels = train_images[:-int(count)], train_labels[:-int(count)]
  train_images, train_labels = _limit(train_images, train_labels, limit_train, "limit_train")
  test_images, test_labels = _limit(test_images, test_labels, limit_test, "limit_test")

  mean, std = _STATS[dataset]
  if train_images.shape[-1] != len(mean):
    raise ValueError(f"{dataset}: images have {train_images.shape[-1]} channels, expected "
                     f"{len(mean)}")
  frozen = freeze_test_set(test_images, seed=seed if test_seed is None else int(test_seed),
                           transform=transform, mean=mean, std=std, noise_std=noise_std)
  resolved.update(dataset=dataset, seed=seed, test_seed=test_seed, limit_train=limit_train,
                  limit_test=limit_test, validation_examples=validation_examples)
  return Protocol(name=name, train_images=np.ascontiguousarray(train_images),
                  train_labels=np.ascontiguousarray(train_labels), test_images=frozen,
                  test_labels=np.ascontiguousarray(test_labels), num_classes=10,
                  mean=tuple(mean), std=tuple(std), options=resolved,
                  random_transform=transform)
