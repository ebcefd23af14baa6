"""Tests for ds_symmetry.data.transforms: exact symmetries, identities, jit/vmap safety."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ds_symmetry.data import transforms


def _images(shape=(3, 28, 28, 2), seed=0):
  return jax.random.uniform(jax.random.key(seed), shape, jnp.float32)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("size", [28, 7])
def test_rotate_multiples_of_90_equal_rot90(k, size):
  images = _images((3, size, size, 2))
  rotated = transforms.rotate(images, jnp.full((3,), k * math.pi / 2))
  expected = jnp.rot90(images, k=k, axes=(1, 2))
  np.testing.assert_allclose(rotated, expected, atol=1e-5)


def test_rotate_by_90_matches_rot90_per_image_convention():
  image = _images((1, 5, 5, 1))
  rotated = transforms.rotate(image, jnp.array([math.pi / 2]))[0]
  np.testing.assert_allclose(rotated, jnp.rot90(image[0], k=1, axes=(0, 1)), atol=1e-5)


def test_rotate_angle_zero_is_identity_also_for_non_square():
  images = _images((2, 5, 9, 3))
  np.testing.assert_array_equal(transforms.rotate(images, jnp.zeros(2)), images)


def test_rotate_fills_zero_and_keeps_centre():
  images = jnp.ones((1, 9, 9, 1))
  rotated = transforms.rotate(images, jnp.array([math.pi / 4]))
  assert float(rotated[0, 0, 0, 0]) == 0.0  # corner comes from outside the image
  assert float(rotated[0, 4, 4, 0]) == pytest.approx(1.0)


def test_rotate_round_trip_on_smooth_image():
  yy, xx = np.mgrid[:28, :28].astype(np.float32)
  blob = np.exp(-((yy - 10.0) ** 2 + (xx - 16.0) ** 2) / 18.0)
  images = jnp.asarray(np.stack([blob, blob.T])[..., None])
  there = transforms.rotate(images, jnp.array([0.3, 1.1]))
  back = transforms.rotate(there, jnp.array([-0.3, -1.1]))
  np.testing.assert_allclose(back, images, atol=0.06)
  assert float(jnp.abs(there - images).max()) > 0.3


def test_scale_factor_one_is_identity():
  images = _images((4, 28, 28, 1))
  np.testing.assert_array_equal(transforms.scale(images, jnp.ones(4)), images)
  np.testing.assert_array_equal(
      transforms.scale(images, jnp.ones(4), antialias=False), images)


def test_scale_paste_geometry_and_mass():
  images = jnp.ones((2, 28, 28, 1))
  out = np.asarray(transforms.scale(images, jnp.array([0.5, 0.3])))
  # int(28*0.5)=14 pixels pasted at (28-14)//2=7; int(28*0.3)=8 pixels at 10.
  for index, (size, top) in enumerate([(14, 7), (8, 10)]):
    mask = np.zeros((28, 28), bool)
    mask[top:top + size, top:top + size] = True
    np.testing.assert_allclose(out[index, ..., 0][mask], 1.0, atol=1e-6)
    np.testing.assert_array_equal(out[index, ..., 0][~mask], 0.0)


def test_scale_matrix_rows_sum_to_one_inside():
  matrix = np.asarray(transforms.resize_paste_matrix(28, jnp.array([0.37, 0.81])))
  for row_sums in matrix.sum(-1):
    assert set(np.round(row_sums, 5)) <= {0.0, 1.0}


def test_horizontal_flip_is_exact():
  images = _images((3, 6, 7, 2))
  flags = jnp.array([True, False, True])
  out = transforms.horizontal_flip(images, flags)
  np.testing.assert_array_equal(out[0], images[0, :, ::-1])
  np.testing.assert_array_equal(out[1], images[1])
  np.testing.assert_array_equal(transforms.horizontal_flip(out, flags), images)


def test_normalize_and_to_float():
  raw = jnp.array([[[[0, 255, 51]]]], jnp.uint8)
  floats = transforms.to_float(raw)
  np.testing.assert_allclose(floats, [[[[0.0, 1.0, 0.2]]]], atol=1e-7)
  out = transforms.normalize(floats, transforms.CIFAR10_MEAN, transforms.CIFAR10_STD)
  expected = (np.array([0.0, 1.0, 0.2]) - transforms.CIFAR10_MEAN) / transforms.CIFAR10_STD
  np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-5)
  with pytest.raises(ValueError, match="mean/std"):
    transforms.normalize(floats, (0.1, 0.2), (0.3, 0.4))


def test_gaussian_noise_std():
  noisy = transforms.add_gaussian_noise(jax.random.key(0), jnp.zeros((64, 28, 28, 1)), 0.01)
  assert float(jnp.std(noisy)) == pytest.approx(0.01, rel=0.02)


def test_random_angles_group_and_range():
  angles = np.degrees(np.asarray(transforms.random_rotation_angles(
      jax.random.key(0), 4000, rotation_group_order=4)))
  assert set(np.round(angles).astype(int)) == {0, 90, 180, 270}
  angles = np.degrees(np.asarray(transforms.random_rotation_angles(
      jax.random.key(0), 4000, max_angle_deg=180, rotation_group_order=4)))
  assert set(np.round(angles).astype(int)) == {0, 90, 180}
  angles = np.degrees(np.asarray(transforms.random_rotation_angles(
      jax.random.key(0), 4000, max_angle_deg=90)))
  assert angles.min() >= 0 and angles.max() <= 90 and angles.max() > 89
  with pytest.raises(ValueError, match="max_angle_deg"):
    transforms.random_rotation_angles(jax.random.key(0), 4, max_angle_deg=400)
  with pytest.raises(ValueError, match="rotation_group_order"):
    transforms.random_rotation_angles(jax.random.key(0), 4, rotation_group_order=0)


def test_bad_parameter_shapes_raise():
  images = _images((3, 8, 8, 1))
  with pytest.raises(ValueError, match="angles"):
    transforms.rotate(images, jnp.zeros(2))
  with pytest.raises(ValueError, match="images"):
    transforms.rotate(images[0], jnp.zeros(3))


def test_transforms_under_jit_and_vmap():
  images = _images((4, 12, 12, 1))
  angles = jnp.linspace(0, 3, 4)
  jitted = jax.jit(transforms.rotate)(images, angles)
  np.testing.assert_allclose(jitted, transforms.rotate(images, angles), atol=1e-6)
  vmapped = jax.vmap(lambda x, a: transforms.scale(x[None], a[None])[0])(images, angles / 4)
  np.testing.assert_allclose(vmapped, transforms.scale(images, angles / 4), atol=1e-6)
  grad = jax.grad(lambda a: transforms.rotate(images, a).sum())(angles)
  assert np.all(np.isfinite(np.asarray(grad)))


@pytest.mark.parametrize("antialias", [True, False])
def test_scale_matches_pil_bilinear_resize_and_paste(antialias):
  pil = pytest.importorskip("PIL.Image")
  rng = np.random.default_rng(0)
  image = rng.random((28, 28)).astype(np.float32)
  factors = [0.3, 0.45, 0.77, 0.9] if antialias else [0.9]  # PIL always antialiases
  out = np.asarray(transforms.scale(jnp.asarray(np.repeat(image[None, ..., None], len(factors),
                                                          0)),
                                    jnp.asarray(factors), antialias=antialias))
  for index, factor in enumerate(factors):
    size = int(28 * factor)
    if not antialias:  # torch interpolate(bilinear, align_corners=False), written out.
      centre = (np.arange(size) + 0.5) * 28 / size - 0.5
      low = np.clip(np.floor(centre).astype(int), 0, 27)
      high = np.clip(low + 1, 0, 27)
      frac = np.clip(centre - np.floor(centre), 0, 1)
      rows = image[low] * (1 - frac)[:, None] + image[high] * frac[:, None]
      resized = rows[:, low] * (1 - frac)[None] + rows[:, high] * frac[None]
    else:
      resized = np.asarray(pil.fromarray(image, mode="F").resize((size, size), pil.BILINEAR))
    canvas = np.zeros((28, 28), np.float32)
    top = (28 - size) // 2
    canvas[top:top + size, top:top + size] = resized
    np.testing.assert_allclose(out[index, ..., 0], canvas, atol=2e-6)
