"""Every experiment config and variant loads, validates and builds its model."""

import importlib.util
import os

import chex
import jax
import numpy as np
import pytest
from flax import nnx

import ds_symmetry  # noqa: F401
from ds_symmetry.models import MODEL_NAMES, count_parameters, create_model
from ds_symmetry.nn import WSGroupConv, WSLiftConv
from ds_symmetry.train import validate_config, variants

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


def _params(model):
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_config_model_options_are_the_factory_and_layer_defaults(model_name):
  """A config's written-out options build the model ``create_model(name)`` builds without
  options: same parameters from the same seed, same layer settings."""
  options = variants.model_options(model_name).to_dict()
  from_config = create_model(model_name, num_classes=10, rngs=nnx.Rngs(0), **options)
  default = create_model(model_name, num_classes=10, rngs=nnx.Rngs(0))
  chex.assert_trees_all_equal(_params(from_config), _params(default))
  settings = ("num_elements", "group", "fix_identity", "sinkhorn_iters", "sinkhorn_tau",
              "sinkhorn_tol", "remat_sinkhorn", "padding", "compute_dtype", "constraint",
              "kernel_mask", "weight_init")
  layers = [(path, module) for path, module in nnx.iter_modules(from_config)
            if isinstance(module, (WSLiftConv, WSGroupConv))]
  default_layers = dict((path, module) for path, module in nnx.iter_modules(default)
                        if isinstance(module, (WSLiftConv, WSGroupConv)))
  assert len(layers) == len(default_layers)
  for path, layer in layers:
    for setting in settings:
      assert getattr(layer, setting) == getattr(default_layers[path], setting), (path, setting)


def test_model_option_overrides_reach_the_layers():
  config = load("rotated_mnist").get_config("wscnn")
  config.model_options.sinkhorn_iters = 3
  config.model_options.fix_identity = False
  config.model_options.channels = 4
  model = create_model(config.model, num_classes=10, rngs=nnx.Rngs(0),
                       **config.model_options.to_dict())
  layers = [m for _, m in nnx.iter_modules(model) if isinstance(m, (WSLiftConv, WSGroupConv))]
  assert layers and all(m.sinkhorn_iters == 3 and not m.fix_identity for m in layers)
  assert layers[0].out_features == 4


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


@pytest.mark.parametrize("fields, message", [
    ({"model": "cnn", "model_options": None, "discovery.when_within": 0.3},
     "model 'cnn', which has nothing to discover"),
    ({"discovery.stop_after": True}, "discovery.stop_after: True would be ignored"),
    ({"discovery.reinitialize": True}, "discovery.reinitialize: True would be ignored"),
    ({"model": "subgroup_cnn", "model_options": None, "protocol": "cifar10",
      "discovery.when_within": 0.05}, "needs square single-channel images"),
    ({"model": "subgroup_cnn", "model_options": None, "discovery.at_step": 10},
     "set discovery.when_within"),
    ({"model": "subgroup_cnn", "model_options": None, "discovery.when_within": 0.05,
      "discovery.require_group": False}, "would be ignored by a subgroup_cnn"),
    ({"discovery.keep_backbone": True}, "discovery.keep_backbone: True would be ignored"),
    ({"model": "wscnn", "model_options": None, "discovery.when_within": 0.05,
      "discovery.keep_backbone": True},
     "discovery.keep_backbone: True is not accepted for model 'wscnn'"),
    ({"model": "subgroup_cnn", "model_options": None, "discovery.when_within": 0.05,
      "discovery.keep_backbone": True, "discovery.stop_after": True},
     r"keep_backbone: True contradicts discovery.stop_after=True"),
    ({"model": "subgroup_cnn", "model_options": None, "discovery.when_within": 0.05,
      "discovery.keep_backbone": True, "discovery.reinitialize": True},
     r"keep_backbone: True contradicts discovery.reinitialize=True"),
    ({"discovery.expand_backbone": True}, "discovery.expand_backbone: True would be ignored"),
    ({"model": "subgroup_cnn", "model_options": None, "discovery.when_within": 0.05,
      "discovery.expand_backbone": True},
     r"discovery.expand_backbone: True needs discovery.keep_backbone=True"),
    ({"discovery.then_train": True}, "discovery.then_train: True would be ignored"),
    ({"model": "wscnn", "model_options": None, "discovery.when_within": 0.05,
      "discovery.then_train": True},
     "discovery.then_train: True is not accepted for model 'wscnn'"),
    ({"model": "subgroup_cnn", "model_options": None, "discovery.when_within": 0.05,
      "discovery.then_train": True, "discovery.keep_backbone": True},
     r"then_train: True contradicts discovery.keep_backbone=True"),
    ({"model": "subgroup_cnn", "model_options": None, "discovery.when_within": 0.05,
      "discovery.then_train": True, "discovery.stop_after": True},
     r"then_train: True contradicts discovery.stop_after=True"),
])
def test_cross_field_rules_are_checked_before_anything_runs(fields, message):
  from ds_symmetry.train import base_config, validate_config
  from ds_symmetry.train.variants import model_options
  config = base_config()
  for key, value in fields.items():
    if key == "model_options":
      config.model_options = model_options(fields["model"])
    elif key.startswith("discovery."):
      config.discovery[key.split(".", 1)[1]] = value
    else:
      config[key] = value
  with pytest.raises(ValueError, match=message):
    validate_config(config)


@pytest.mark.parametrize("options, message", [
    ({"tie": "cayley"}, r"model_options.tie='cayley' .* needs factorise='kronecker'"),
    ({"factorise": "kronecker", "tie": "cyclic"},
     r"model_options.tie: 'cyclic' .* needs model_options.elements"),
    ({"cayley_temperature": 0.1}, r"cayley_temperature: 0.1 would be ignored"),
    ({"factorise": "tied"}, r"model_options.factorise must be one of"),
    ({"elements": "power_blend"},
     r"model_options.elements='power_blend' .* needs constraint='isometries'"),
])
def test_stack_options_that_do_not_fit_are_refused_naming_the_fields(options, message):
  config = load("rotated_mnist").get_config("wscnn")
  config.model_options.update(options)
  with pytest.raises(ValueError, match=message):
    validate_config(config)


def test_a_config_with_options_the_study_saw_fail_validates_with_one_warning_line(
    monkeypatch, caplog):
  from ds_symmetry.nn.stacks import EXPERIMENTAL_OPTIONS
  from ds_symmetry.train import config as config_lib
  monkeypatch.setattr(config_lib, "_WARNED", set())
  config = load("rotated_mnist").get_config("wscnn")
  config.model_options.update(factorise="kronecker", tie="shared", constraint="softmax")
  with caplog.at_level("WARNING"):
    validate_config(config)
    validate_config(config)  # main, the trainer and its run each validate: still one line
    validate_config(load("default").get_config())  # the recipe: nothing experimental
  lines = [r.getMessage() for r in caplog.records if "experimental" in r.getMessage()]
  assert len(lines) == 1 and "\n" not in lines[0]
  assert "tie='shared'" in lines[0] and "constraint='softmax'" in lines[0]
  assert EXPERIMENTAL_OPTIONS["tie='shared'"] in lines[0]


def test_a_config_recorded_with_old_field_names_reads_back_as_the_same_config(tmp_path):
  """config.json / results.json written before factorise / tie and config.discovery
  (committed results, old workdirs) hold model_options.sharing and top-level discover_*
  fields: read back, they are today's config (so a resume is not refused), and the
  command-line names are refused with the new ones."""
  import json
  from ds_symmetry import run_files
  from ds_symmetry.train.config import config_differences, renamed_field
  config = load("rotated_mnist").get_config("wscnn")
  config.model_options.update(factorise="kronecker", tie="cayley")
  config.discovery.update(when_within=0.3, reinitialize=True)
  current = run_files.config_as_dict(config)
  recorded = json.loads(json.dumps(current))
  del recorded["model_options"]["factorise"], recorded["model_options"]["tie"]
  recorded["model_options"]["sharing"] = "tied_cayley"
  for old, new in run_files.LEGACY_DISCOVERY.items():
    recorded[old] = recorded["discovery"].pop(new)
  del recorded["discovery"]
  assert recorded["discover_when_within"] == 0.3 and recorded["discover_reinitialize"]
  (tmp_path / "config.json").write_text(json.dumps(recorded))
  (tmp_path / "results.json").write_text(json.dumps({"config": recorded}))
  assert run_files.read_config(str(tmp_path)) == current
  assert run_files.read_results(str(tmp_path))["config"] == current
  assert config_differences(run_files.read_config(str(tmp_path)), current) == ([], [])
  message = renamed_field("--config.model_options.sharing=tied_cayley")
  assert ("--config.model_options.factorise=kronecker --config.model_options.tie=cayley"
          in message)
  assert "is now --config.discovery.when_within" in renamed_field(
      "--config.discover_when_within=0.3")
  assert renamed_field("--config.model_options.factorise=kronecker") is None
  assert renamed_field("--config.discovery.when_within=0.3") is None


def test_the_recipe_and_its_variants_pass_the_rules():
  import importlib
  from ds_symmetry.train import validate_config
  discover = importlib.import_module("configs.discover")
  for data in discover.VARIANTS:
    validate_config(discover.get_config(f"{data},32"))
  with pytest.raises(ValueError, match="config variant: 'bogus'"):
    discover.get_config("bogus")


def test_a_fixed_prior_trains_exactly_as_the_recipe_with_only_the_model_changed():
  import importlib
  from ds_symmetry.models.factory import exact_model_options
  discover = importlib.import_module("configs.discover")
  fixed = importlib.import_module("configs.fixed_group")
  recipe = discover.get_config("mirrored,16")
  for model in ("cnn", "flip", "C4", "D4"):
    config = fixed.get_config(f"mirrored,{model}")
    validate_config(config)
    for field in ("protocol", "protocol_options", "limit_train", "num_epochs", "batch_size",
                  "learning_rate", "eval_batch_size", "evals_per_epoch"):
      assert config[field] == recipe[field], field
    assert config.discovery.when_within == 0.0
  gcnn = fixed.get_config("mirrored,D4")
  # The very G-CNN the recipe builds when it finds D4 (same options, hence same init per seed).
  name, options = exact_model_options("subgroup_cnn", recipe.model_options.to_dict(), "D4")
  assert gcnn.model == name and {k: gcnn.model_options[k] for k in options} == options
  assert fixed.get_config("rotated,cnn,32").model_options.channels == 32


@pytest.mark.parametrize("variant, message", [
    ("mirrored", "expected '<data>,<model>"),
    ("mirrored,C8", "model 'C8' is not accepted"),
    ("bogus,C4", "config variant: 'bogus,16'|config variant: 'bogus'"),
    ("mirrored,C4,0", "channels '0' is not accepted"),
])
def test_a_bad_fixed_prior_variant_is_one_line(variant, message):
  import importlib
  fixed = importlib.import_module("configs.fixed_group")
  with pytest.raises(ValueError, match=message):
    fixed.get_config(variant)


def test_answer_config_refuses_a_model_without_subgroups_or_an_unknown_answer():
  import importlib
  from ds_symmetry.train.variants import answer_config
  discover = importlib.import_module("configs.discover")
  recipe = discover.get_config("mirrored,16")
  with pytest.raises(ValueError, match="model: 'C8' is not accepted; expected 'cnn' or one of"):
    answer_config(recipe, "C8")
  fixed = importlib.import_module("configs.fixed_group").get_config("mirrored,cnn")
  with pytest.raises(ValueError, match="config.model: 'cnn' is not accepted"):
    answer_config(fixed, "D4")
  recipe.discovery.then_train, recipe.discovery.keep_backbone = True, False
  answer = answer_config(recipe, "flip")                   # discovery.then_train's stage 2
  validate_config(answer)
  assert not answer.discovery.then_train and answer.discovery.when_within == 0.0
  assert recipe.discovery.then_train                        # the input unchanged
