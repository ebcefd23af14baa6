"""Every experiment config and variant loads, validates and builds its model."""

import importlib.util
import os

import pytest
from flax import nnx

import ds_symmetry  # noqa: F401
from ds_symmetry.models import count_parameters, create_model
from ds_symmetry.train import validate_config

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

VARIANTS = {
    "default": [None],
    "rotated_mnist": ["cnn", "gcnn", "wscnn", "gcnn16"],
    "scaled_mnist": ["cnn", "gcnn", "wscnn"],
    "partial_rotation": ["cnn", "gcnn", "wscnn", "wscnn,180"],
    "cifar10": ["resnet", "gresnet", "wsresnet", "resnet64", "resnet128"],
    "flipped_cifar10": ["resnet", "gresnet", "wsresnet"],
}


def load(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(CONFIGS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("name,variant", [(n, v) for n, vs in VARIANTS.items() for v in vs])
def test_config_variant_is_valid(name, variant):
  config = load(name).get_config(variant)
  validate_config(config)
  model = create_model(config.model, num_classes=10, rngs=nnx.Rngs(0),
                       **config.model_options.to_dict())
  assert count_parameters(model)["free"] > 0
  assert config.weight_decay == 1e-4 and config.seed == 0 and config.entropy_weight == 0.0
  if name == "default":
    return
  mnist = "cifar" not in name
  assert config.learning_rate == (1e-2 if mnist else 1e-4)
  assert config.logits_learning_rate == 1e-2
  assert config.batch_size == (64 if mnist else 128)
  assert config.num_epochs == (100 if mnist else 200)
  assert config.norm_weight == 0.1 and config.model_options.get("sinkhorn_iters", 20) == 20
  assert config.schedule == "constant" and config.grad_clip_norm == 0


def test_paper_parameter_counts():
  config = load("rotated_mnist").get_config("gcnn16")
  model = create_model(config.model, num_classes=10, rngs=nnx.Rngs(0),
                       **config.model_options.to_dict())
  assert count_parameters(model)["free"] == 103_050


def test_unknown_variant_lists_valid_ones():
  with pytest.raises(ValueError, match="wscnn"):
    load("rotated_mnist").get_config("wsnn")
  with pytest.raises(ValueError, match="wsresnet"):
    load("cifar10").get_config("cnn")


def test_unknown_override_is_an_error():
  config = load("default").get_config()
  config.lock()
  with pytest.raises(AttributeError):
    config.learnig_rate = 1.0
  config.unlock()
  config.learnig_rate = 1.0
  with pytest.raises(ValueError, match="unknown key.*learnig_rate"):
    validate_config(config)
