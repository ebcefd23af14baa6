"""Importing the reference implementation's weights (``ds_symmetry.models.reference``)."""

import importlib.util
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ds_symmetry.models import create_model, regularizer_terms
from ds_symmetry.models.reference import (REFERENCE_SINKHORN_TOL, import_reference_layer,
                                          import_reference_weights, load_state_dict,
                                          model_from_reference, reference_options)
from ds_symmetry.nn import WSGroupConv, WSLiftConv
from ds_symmetry.ops import conv_paths

# The reference's vectors: a slice (every layer-level vector and the whole WSCNN's logits and
# regularisers, 0.86 MB) travels with the repository in tests/data/; the complete file (2.4 MB,
# with the WSCNN's weights) lives beside the repository, or where DS_SYMMETRY_TEST_REFERENCE says.
SLICE_FILE = pathlib.Path(__file__).resolve().parent / "data" / "reference_slice.npz"
REFERENCE_FILE = pathlib.Path(os.environ.get(
    "DS_SYMMETRY_TEST_REFERENCE",
    pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "reference"
    / "official_ws.npz"))


def reference_layout(model):
  """A state dict in the reference's names and layout, written out by hand from our model."""
  convs = list(model.convs)
  out = {}
  for index, conv in enumerate(convs):
    name = "first_conv" if index == 0 else f"convs.{index - 1}"
    if hasattr(conv, "logits"):  # weight-sharing layer
      out[f"{name}.weight"] = np.asarray(conv.weight[...])
      out[f"{name}.bias"] = np.asarray(conv.bias[...]).reshape(-1, 1, 1, 1)
      out[f"{name}.representations"] = np.asarray(conv.logits[...])
      d = conv.representation_size
      out[f"{name}.id"] = np.eye(d, dtype=np.float32)[None] + 1e-16
    else:  # HWIO -> OIHW
      out[f"{name}.weight"] = np.transpose(np.asarray(conv.kernel[...]), (3, 2, 0, 1))
      out[f"{name}.bias"] = np.asarray(conv.bias[...])
  out["final_linear.weight"] = np.asarray(model.head.kernel[...]).T
  out["final_linear.bias"] = np.asarray(model.head.bias[...])
  return out


def images(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


@pytest.mark.parametrize("name", ["wscnn", "cnn"])
def test_synthetic_state_dict_round_trips(name):
  source = create_model(name, num_classes=7, rngs=nnx.Rngs(1), channels=4, num_blocks=3)
  state_dict = reference_layout(source)
  rebuilt = model_from_reference(state_dict, reproduce_early_exit=False)
  x = images((2, 20, 20, 1))
  np.testing.assert_array_equal(np.asarray(rebuilt(x)), np.asarray(source(x)))
  # Into an existing model with other initial values, via a Lightning-style prefix.
  target = create_model(name, num_classes=7, rngs=nnx.Rngs(2), channels=4, num_blocks=3)
  import_reference_weights(target, {f"model.{k}": v for k, v in state_dict.items()})
  for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(source, nnx.Param)),
                               nnx.to_flat_state(nnx.state(target, nnx.Param))):
    np.testing.assert_array_equal(np.asarray(a.get_value()), np.asarray(b.get_value()),
                                  err_msg=str(path))


def test_cnn_kernel_layout_matches_an_nchw_convolution():
  """Independent of our transposes: the first layer equals lax's OIHW convolution."""
  model = create_model("cnn", num_classes=3, rngs=nnx.Rngs(0), channels=4, num_blocks=2)
  weight = np.asarray(jax.random.normal(jax.random.key(3), (4, 1, 5, 5)))
  state_dict = reference_layout(model)
  state_dict["first_conv.weight"] = weight
  import_reference_weights(model, state_dict)
  x = images((2, 12, 12, 1))
  ours = model.convs[0](x)
  expected = jax.lax.conv_general_dilated(
      jnp.transpose(x, (0, 3, 1, 2)), jnp.asarray(weight), (1, 1), "VALID",
      dimension_numbers=("NCHW", "OIHW", "NCHW")) + np.asarray(
          state_dict["first_conv.bias"])[None, :, None, None]
  np.testing.assert_allclose(np.asarray(ours), np.transpose(np.asarray(expected), (0, 2, 3, 1)),
                             rtol=1e-5, atol=1e-5)


def test_options_read_off_the_shapes():
  model = create_model("wscnn", num_classes=7, rngs=nnx.Rngs(1), channels=4, num_blocks=3)
  name, options = reference_options(reference_layout(model))
  assert name == "wscnn"
  assert options == {"channels": 4, "in_channels": 1, "num_blocks": 3, "num_classes": 7,
                     "kernel_size": 5, "fix_identity": True, "num_elements": 4}


def test_every_name_and_shape_is_checked():
  model = create_model("wscnn", num_classes=7, rngs=nnx.Rngs(1), channels=4, num_blocks=3)
  good = reference_layout(model)
  missing = dict(good)
  del missing["convs.0.bias"]
  with pytest.raises(ValueError, match=r"missing entries \['convs.0.bias'\]"):
    import_reference_weights(model, missing)
  extra = dict(good, **{"convs.2.weight": good["convs.1.weight"]})
  with pytest.raises(ValueError, match=r"unexpected entries \['convs.2.weight'\]"):
    import_reference_weights(model, extra)
  wrong = dict(good, **{"first_conv.representations": np.zeros((3, 24, 24), np.float32)})
  with pytest.raises(ValueError, match=r"first_conv.representations.*\(3, 24, 24\).*"
                                       r"\(3, 25, 25\)"):
    import_reference_weights(model, wrong)
  not_identity = dict(good, **{"first_conv.id": np.ones((1, 25, 25), np.float32)})
  with pytest.raises(ValueError, match="first_conv.id.*identity"):
    import_reference_weights(model, not_identity)
  with pytest.raises(ValueError, match="prefix"):
    load_state_dict(good, prefix="nothing/")
  with pytest.raises(ValueError, match="source"):
    load_state_dict("weights.bin")
  with pytest.raises(ValueError, match="ResNet is not supported"):
    import_reference_weights(create_model("resnet", num_classes=10, rngs=nnx.Rngs(0),
                                          channels=4), good)


def test_npz_file_and_ckpt_without_torch(tmp_path):
  model = create_model("cnn", num_classes=7, rngs=nnx.Rngs(1), channels=4, num_blocks=2)
  path = tmp_path / "weights.npz"
  np.savez(path, **{f"cnn_sd/{k}": v for k, v in reference_layout(model).items()}, other=1)
  rebuilt = model_from_reference(path, prefix="cnn_sd/")
  x = images((1, 12, 12, 1))
  np.testing.assert_array_equal(np.asarray(rebuilt(x)), np.asarray(model(x)))
  if importlib.util.find_spec("torch") is None:
    (tmp_path / "last.ckpt").write_bytes(b"")
    with pytest.raises(ImportError, match="PyTorch"):
      load_state_dict(tmp_path / "last.ckpt")


def test_a_damaged_empty_or_non_finite_state_dict_is_refused_in_one_line(tmp_path):
  model = create_model("cnn", num_classes=7, rngs=nnx.Rngs(1), channels=4, num_blocks=2)
  path = tmp_path / "weights.npz"
  np.savez(path, **reference_layout(model))
  path.write_bytes(path.read_bytes()[:100])                            # truncated
  with pytest.raises(ValueError, match=r"weights.npz' could not be read as .npz"):
    load_state_dict(path)
  np.savez(tmp_path / "empty.npz")
  with pytest.raises(ValueError, match=r"empty.npz' holds no arrays"):
    load_state_dict(tmp_path / "empty.npz")
  state_dict = reference_layout(model)
  state_dict["final_linear.bias"] = np.full_like(state_dict["final_linear.bias"], np.nan)
  with pytest.raises(ValueError, match=r"final_linear.bias'\]: holds 7 non-finite values"):
    import_reference_weights(model, state_dict)


def _load(path):
  with np.load(path) as data:
    return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def reference_slice():
  """The vendored slice: present in every clone, so these tests never skip."""
  return _load(SLICE_FILE)


@pytest.fixture(scope="module")
def reference():
  if not REFERENCE_FILE.exists():
    pytest.skip(f"the reference vectors {REFERENCE_FILE} are not present (they live beside the "
                f"repository, in ../shared/data/reference/; or set DS_SYMMETRY_TEST_REFERENCE)")
  return _load(REFERENCE_FILE)


def test_vendored_slice_is_a_copy_of_the_reference_file(reference_slice, reference):
  assert SLICE_FILE.stat().st_size <= 1_000_000
  for name, array in reference_slice.items():
    np.testing.assert_array_equal(array, reference[name], err_msg=name)


# Layer outputs against the reference's (lifting, group layer): XLA's convolution to float32
# rounding (the group layer within 1.2e-6 of values up to 2.7); the winograd path
# (ops.winograd; auto on AVX-512 CPUs for the group layers) has about 5-10x that error.
LAYER_ATOL = {"xla": (1e-6, 5e-6), "winograd": (1.5e-5, 1.5e-5)}


@pytest.mark.parametrize("path", sorted(LAYER_ATOL))
def test_reference_lifting_and_group_layers(reference_slice, path):
  with conv_paths.conv_path(path):
    _check_reference_layers(reference_slice, *LAYER_ATOL[path])


def _check_reference_layers(reference_slice, lift_atol, group_atol):
  reference = reference_slice
  lift = WSLiftConv(1, 4, 5, num_elements=4, sinkhorn_tol=REFERENCE_SINKHORN_TOL,
                    rngs=nnx.Rngs(0))
  import_reference_layer(lift, weight=reference["lift_weight"], bias=reference["lift_bias"],
                         representations=reference["lift_logits"])
  np.testing.assert_allclose(np.asarray(lift.representation_stack()), reference["lift_reps"],
                             rtol=1e-6, atol=1e-7)
  y = lift(jnp.transpose(jnp.asarray(reference["lift_x"]), (0, 2, 3, 1)))
  # reference [B, C, G, H, W] -> ours [B, H, W, C, G]
  np.testing.assert_allclose(np.asarray(y), np.transpose(reference["lift_y"], (0, 3, 4, 1, 2)),
                             rtol=1e-5, atol=lift_atol)

  group = WSGroupConv(4, 4, 5, num_elements=4, sinkhorn_tol=REFERENCE_SINKHORN_TOL,
                      rngs=nnx.Rngs(0))
  import_reference_layer(group, weight=reference["gconv_weight"], bias=reference["gconv_bias"],
                         representations=reference["gconv_logits"])
  np.testing.assert_allclose(np.asarray(group.representation_stack()), reference["gconv_reps"],
                             rtol=1e-6, atol=1e-7)
  y = group(jnp.transpose(jnp.asarray(reference["gconv_x"]), (0, 3, 4, 1, 2)))
  np.testing.assert_allclose(np.asarray(y), np.transpose(reference["gconv_y"], (0, 3, 4, 1, 2)),
                             rtol=1e-5, atol=group_atol)
  terms = group.regularizers()
  np.testing.assert_allclose(float(terms["norm"]), float(reference["gconv_norm_loss"]), rtol=1e-6)
  np.testing.assert_allclose(float(terms["entropy"]), float(reference["gconv_entropy"]),
                             rtol=1e-6)


def test_reference_wscnn_regularisers_from_its_logits(reference_slice):
  """The whole network's summed regularisers depend on its logits only: checked from the slice."""
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0),
                       sinkhorn_tol=REFERENCE_SINKHORN_TOL)
  names = ["first_conv"] + [f"convs.{index}" for index in range(len(model.convs) - 1)]
  assert len(names) == 5
  for conv, name in zip(model.convs, names):
    import_reference_layer(conv, weight=np.asarray(conv.weight[...]),
                           bias=np.asarray(conv.bias[...]),
                           representations=reference_slice[f"wscnn_sd/{name}.representations"])
  terms = regularizer_terms(model)
  np.testing.assert_allclose(float(terms["norm"]), float(reference_slice["wscnn_norm_loss"]),
                             rtol=1e-6)
  np.testing.assert_allclose(float(terms["entropy"]), float(reference_slice["wscnn_entropy"]),
                             rtol=1e-6)


def test_reference_wscnn_logits_and_regularisers(reference):
  """Needs the complete file (the WSCNN's weights do not fit the vendored slice)."""
  state_dict = {k[len("wscnn_sd/"):]: v for k, v in reference.items()
                if k.startswith("wscnn_sd/")}
  model = model_from_reference(state_dict)
  model.eval()
  logits = model(jnp.transpose(jnp.asarray(reference["wscnn_x"]), (0, 2, 3, 1)))
  np.testing.assert_allclose(np.asarray(logits), reference["wscnn_logits"], rtol=1e-5,
                             atol=1e-6)
  terms = regularizer_terms(model)
  np.testing.assert_allclose(float(terms["norm"]), float(reference["wscnn_norm_loss"]),
                             rtol=1e-6)
  np.testing.assert_allclose(float(terms["entropy"]), float(reference["wscnn_entropy"]),
                             rtol=1e-6)
  np.testing.assert_allclose(np.asarray(model.convs[0].representation_stack()[0]),
                             np.eye(25), atol=0)
