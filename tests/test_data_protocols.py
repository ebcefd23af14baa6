"""Tests for ds_symmetry.data.protocols: labels kept, frozen test sets, jit-safe augment."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ds_symmetry import data
from ds_symmetry.data import transforms


def _arrays(n_train=16, n_test=12, shape=(28, 28, 1), seed=0):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n_train,) + shape, dtype=np.uint8),
          rng.integers(0, 10, (n_train,)).astype(np.int32),
          rng.integers(0, 256, (n_test,) + shape, dtype=np.uint8),
          rng.integers(0, 10, (n_test,)).astype(np.int32))


MNIST_PROTOCOLS = ["mnist", "rotated_mnist", "partial_rotation", "scaled_mnist"]
CIFAR_PROTOCOLS = ["cifar10", "flipped_cifar10"]


@pytest.mark.parametrize("name", MNIST_PROTOCOLS + CIFAR_PROTOCOLS)
def test_protocol_shapes_dtypes_and_labels(name):
  shape = (32, 32, 3) if name in CIFAR_PROTOCOLS else (28, 28, 1)
  arrays = _arrays(shape=shape)
  protocol = data.make_protocol(name, arrays=arrays, seed=3)
  assert protocol.name == name and protocol.num_classes == 10
  assert protocol.image_shape == shape
  assert protocol.train_images.dtype == np.uint8
  assert protocol.test_images.dtype == np.float32 and protocol.test_images.shape == (12,) + shape
  np.testing.assert_array_equal(protocol.train_labels, arrays[1])
  np.testing.assert_array_equal(protocol.test_labels, arrays[3])
  batch = jax.jit(protocol.augment)(jax.random.key(0), protocol.train_images[:8])
  assert batch.shape == (8,) + shape and batch.dtype == jnp.float32


def test_real_rotated_mnist_subset(mnist_dir):
  protocol = data.make_protocol("rotated_mnist", data_dir=mnist_dir, limit_train=256,
                                limit_test=128)
  assert protocol.train_images.shape == (256, 28, 28, 1)
  assert protocol.test_images.shape == (128, 28, 28, 1)
  full_labels = data.load_dataset("mnist", "test", data_dir=mnist_dir)[1]
  np.testing.assert_array_equal(protocol.test_labels, full_labels[:128])
  # Normalised train statistics without transform: about zero mean, unit std.
  plain = np.asarray(protocol.preprocess(protocol.train_images))
  assert abs(plain.mean()) < 0.1 and abs(plain.std() - 1) < 0.1


def test_plain_protocols_apply_only_normalisation():
  arrays = _arrays()
  protocol = data.make_protocol("mnist", arrays=arrays)
  expected = (arrays[2].astype(np.float32) / 255 - 0.1307) / 0.3081
  np.testing.assert_allclose(protocol.test_images, expected, rtol=1e-5, atol=1e-5)
  out = protocol.augment(jax.random.key(1), arrays[0])
  np.testing.assert_allclose(out, (arrays[0] / 255 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-5)
  cifar_arrays = _arrays(shape=(32, 32, 3))
  cifar = data.make_protocol("cifar10", arrays=cifar_arrays)
  expected = ((cifar_arrays[2] / 255 - np.array(transforms.CIFAR10_MEAN))
              / np.array(transforms.CIFAR10_STD))
  np.testing.assert_allclose(cifar.test_images, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["rotated_mnist", "scaled_mnist"])
def test_frozen_test_set_is_deterministic_and_depends_on_seed(name):
  arrays = _arrays()
  first = data.make_protocol(name, arrays=arrays, seed=0).test_images
  again = data.make_protocol(name, arrays=arrays, seed=0).test_images
  other = data.make_protocol(name, arrays=arrays, seed=1).test_images
  np.testing.assert_array_equal(first, again)
  assert np.abs(first - other).max() > 0.1
  shared = data.make_protocol(name, arrays=arrays, seed=5, test_seed=0).test_images
  np.testing.assert_array_equal(first, shared)
  # Image i is frozen the same way whatever limit_test is.
  limited = data.make_protocol(name, arrays=arrays, seed=0, limit_test=5).test_images
  np.testing.assert_array_equal(limited, first[:5])


def test_flipped_cifar_test_set_is_frozen_flips():
  arrays = _arrays(n_test=40, shape=(8, 8, 3))
  protocol = data.make_protocol("flipped_cifar10", arrays=arrays, seed=2)
  plain = data.make_protocol("cifar10", arrays=arrays).test_images
  flipped = np.array([np.allclose(t, p[:, ::-1], atol=1e-6)
                      for t, p in zip(protocol.test_images, plain)])
  unchanged = np.array([np.allclose(t, p, atol=1e-6)
                        for t, p in zip(protocol.test_images, plain)])
  assert np.all(flipped | unchanged) and 5 < flipped.sum() < 35


def test_rotated_mnist_test_noise_after_normalisation():
  arrays = _arrays(n_test=64)
  noisy = data.make_protocol("rotated_mnist", arrays=arrays, seed=0).test_images
  clean = data.make_protocol("rotated_mnist", arrays=arrays, seed=0,
                             test_noise_std=0.0).test_images
  assert float(np.std(noisy - clean)) == pytest.approx(0.01, rel=0.05)


def test_c4_protocol_augments_with_exact_quarter_turns():
  arrays = _arrays(n_train=32)
  protocol = data.make_protocol("rotated_mnist", arrays=arrays, rotation_group_order=4)
  out = np.asarray(protocol.augment(jax.random.key(7), arrays[0]))
  plain = np.asarray(protocol.preprocess(arrays[0]))
  seen = set()
  for image, reference in zip(out, plain):
    matches = [k for k in range(4)
               if np.allclose(image, np.rot90(reference, k=k, axes=(0, 1)), atol=1e-4)]
    assert matches, "augmented image is not a quarter turn of its input"
    seen.add(matches[0])
  assert len(seen) >= 3


def test_partial_rotation_range():
  # A one-pixel image at the top centre goes counter-clockwise, to the left half, for
  # angles in (0, 90]; never to the right half.
  image = np.zeros((1, 29, 29, 1), np.uint8)
  image[0, 2, 14, 0] = 255
  arrays = (np.repeat(image, 64, 0), np.zeros(64, np.int32), image, np.zeros(1, np.int32))
  protocol = data.make_protocol("partial_rotation", arrays=arrays, max_angle_deg=90,
                                test_noise_std=0.0)
  out = np.asarray(protocol.augment(jax.random.key(0), arrays[0]))[..., 0]
  background = (0 - 0.1307) / 0.3081
  bright = out > background + 0.5
  columns = np.nonzero(bright)[2]
  assert columns.max() <= 14.5 and columns.min() < 6


def test_augment_is_fresh_per_key_and_jit_safe():
  arrays = _arrays()
  protocol = data.make_protocol("rotated_mnist", arrays=arrays)
  chex.clear_trace_counter()

  @chex.assert_max_traces(n=1)  # new keys and the same shapes must not retrace
  def augment_batch(key, images, idx):
    return protocol.augment(key, images[idx])

  step = jax.jit(augment_batch)
  images = jax.device_put(protocol.train_images)
  idx = jnp.arange(8)
  a = step(jax.random.key(0), images, idx)
  b = step(jax.random.key(1), images, idx)
  c = step(jax.random.key(0), images, idx)
  np.testing.assert_array_equal(a, c)
  assert float(jnp.abs(a - b).max()) > 0.1


def test_bad_protocol_arguments():
  arrays = _arrays()
  with pytest.raises(ValueError, match="name: 'rotmnist'"):
    data.make_protocol("rotmnist", arrays=arrays)
  with pytest.raises(ValueError, match=r"options: \['max_angle'\]"):
    data.make_protocol("rotated_mnist", arrays=arrays, max_angle=90)
  with pytest.raises(ValueError, match="max_angle_deg: 720"):
    data.make_protocol("partial_rotation", arrays=arrays, max_angle_deg=720)
  with pytest.raises(ValueError, match="min_scale/max_scale"):
    data.make_protocol("scaled_mnist", arrays=arrays, min_scale=0.0)
  with pytest.raises(ValueError, match="dataset: 'cifar10'"):
    data.make_protocol("rotated_mnist", arrays=arrays, dataset="cifar10")
  with pytest.raises(ValueError, match="limit_train"):
    data.make_protocol("mnist", arrays=arrays, limit_train=0)
  with pytest.raises(ValueError, match="channels"):
    data.make_protocol("cifar10", arrays=arrays)


@pytest.mark.parametrize("order, flips, expected", [
    (None, 0.5, {0, 4}),                       # mirrored MNIST: identity or the left-right flip
    (2, 0.0, {0, 2}),                          # 0° or 180°
    (4, 0.5, set(range(8))),                   # multiples of 90°, then a mirror: all of D4
])
def test_the_identification_variants_draw_exactly_their_group(order, flips, expected):
  from ds_symmetry import ops
  arrays = _arrays(n_train=64)
  options = {"flip_probability": flips}
  if order is None:
    protocol = data.make_protocol("mnist", arrays=arrays, **options)
  else:
    protocol = data.make_protocol("rotated_mnist", arrays=arrays, rotation_group_order=order,
                                  **options)
  out = np.asarray(protocol.augment(jax.random.key(3), arrays[0]))
  plain = np.asarray(protocol.preprocess(arrays[0]))
  seen = set()
  for image, reference in zip(out, plain):
    matches = [g for g in range(8)
               if np.allclose(image, ops.apply_element("D4", g, reference, axes=(0, 1)),
                              atol=1e-4)]
    assert matches and set(matches) <= expected
    seen.add(matches[0])
  assert seen == expected


def test_a_validation_split_holds_out_the_last_training_images_in_place_of_test():
  arrays = _arrays(n_train=40, n_test=12)
  protocol = data.make_protocol("mnist", arrays=arrays, validation_examples=10, limit_train=20)
  np.testing.assert_array_equal(protocol.train_images, arrays[0][:20])
  np.testing.assert_array_equal(protocol.test_labels, arrays[1][30:])
  np.testing.assert_allclose(protocol.test_images, protocol.preprocess(arrays[0][30:]),
                             atol=1e-6)
  assert protocol.options["validation_examples"] == 10
  for bad in (0, 40, 2.5):
    with pytest.raises(ValueError, match=f"validation_examples: {bad!r}"):
      data.make_protocol("mnist", arrays=arrays, validation_examples=bad)
  with pytest.raises(ValueError, match="flip_probability: 1.5"):
    data.make_protocol("mnist", arrays=arrays, flip_probability=1.5)
