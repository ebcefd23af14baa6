"""Trainer configuration: the base ``ConfigDict``, the paper's defaults, and validation.

Every experiment file in ``configs/`` starts from :func:`base_config` and changes a few
fields. The config is locked, so a misspelt override (``--config.learnig_rate=...``) is an
error; :func:`validate_config` then checks values (model and protocol names, ranges).

Fields (defaults are the paper's MNIST settings, ``docs/paper_reference.md`` §5):

  model, model_options           ``create_model(model, **model_options)``; a learned model's
                                 group layers: model_options.factorise ("none" | "kronecker")
                                 and model_options.tie ("none" | "spatial" | "shared" |
                                 "cayley" | "cyclic"), ``nn.stacks.options``
  protocol, protocol_options     ``make_protocol(protocol, **protocol_options)``
  data_dir                       None: ``$DS_SYMMETRY_DATA`` / cache / download (data module)
  limit_train, limit_test        None or keep the first N examples
  optimizer                      "adamw" (the only one; weight decay on every parameter)
  learning_rate, logits_learning_rate, weight_decay, b1, b2, eps
  schedule                       "constant" | "cosine" | "warmup_cosine"; warmup_steps
  grad_clip_norm                 0 = off; else global-norm clipping
  <name>_weight                  one per regulariser of ``nn.introspection.REGULARIZERS``:
                                 loss = CE + Σ <name>_weight·<name> (norm_weight, entropy_weight,
                                 isometry_weight: a geometric prior on spatial stacks)
  num_epochs, num_train_steps    num_train_steps > 0 overrides num_epochs
  batch_size, eval_batch_size    global batch sizes (divisible by the device count)
  eval_every_epochs              evaluation (and stacks.npz, analysis) every N epochs and at the end
  evals_per_epoch                evaluations per evaluated epoch (4: every quarter epoch)
  discovery.*                    rounding the model to its discovered G-CNN during training
                                 (``ds_symmetry.discovery``), then training that on:
    at_step                      0 = off; else round at that step
    when_within                  0 = off; else round as soon as the model has committed: at a
                                 check (every check_every_steps steps) where the lifting stack's
                                 nearest permutations are a group of distinct elements and every
                                 element lies within this distance (‖R − P‖_F / √d) of its
                                 permutation (``discovery.committed_group``), or (subgroup_cnn)
                                 one subgroup holds q ≥ 1 − when_within; whichever of this and
                                 at_step comes first
    check_every_steps            how often when_within looks at the model
    stop_after                   end the run at the discovery (after its evaluation and
                                 checkpoint): for identification, where the answer is the result
    require_group                stop with an error if the rounded lifting stack is no group
    reinitialize                 at the discovery, re-draw the weights from the model's own
                                 initialisation (``seed``) instead of keeping the learned ones:
                                 "discover, then retrain" (the learned weights can be a worse
                                 start than a fresh draw; docs/learning_the_group.md)
    keep_backbone                (subgroup_cnn) at the commitment, keep the selector's trained
                                 backbone f and train on its average over the answer H,
                                 y_H(x) = mean_{h∈H} f(h·x) (``nn.GroupAveraged``: exactly
                                 H-invariant, |H| backbone passes per image), instead of H's
                                 exact G-CNN from fresh weights
    expand_backbone              (with keep_backbone) the kept backbone becomes H's exact G-CNN
                                 started from its own filters (``models.gcnn_from_cnn``: every
                                 group channel carries f's kernels, the other group slices
                                 zero; no disk mask), so it starts as f averaged over H (up to
                                 the layer norm's joint statistics) with a G-CNN's capacity;
                                 its weights then train at learning_rate / |H|
    then_train                   (subgroup_cnn) identify, then train: the selector's run ends at
                                 the commitment (in <workdir>/identify), then the named
                                 subgroup's exact G-CNN (the plain CNN for the trivial group;
                                 ``variants.answer_config``) trains from fresh weights for the
                                 whole budget, same seed (in <workdir>/trained);
                                 <workdir>/results.json joins the two (``train.two_stage``)
  checkpoint_every_steps, keep_checkpoints
  seed
  log_every_steps, progress_bar  progress_bar: "auto" (a TTY), "on", "off"
  track_symmetry                 nearest-group distances of learned stacks at every eval
  save_figures                   PNGs of stacks and lifting-kernel orbits at the end
  distributed.*                  ``jax.distributed.initialize`` arguments (multi-host)
"""

from __future__ import annotations

import re

import ml_collections
from absl import logging
from ml_collections import config_dict

from ds_symmetry import run_files
from ds_symmetry.data import PROTOCOLS
from ds_symmetry.data.protocols import protocol_options
from ds_symmetry.models import MODEL_NAMES
from ds_symmetry.models.factory import MODEL_DEFAULTS
from ds_symmetry.nn.introspection import REGULARIZERS
from ds_symmetry.nn.stacks import options as stack_options
from ds_symmetry.train import variants

SCHEDULES = ("constant", "cosine", "warmup_cosine")
OPTIMIZERS = ("adamw",)
PROGRESS_BAR = ("auto", "on", "off")

# Fields that set how long a run trains (discovery.stop_after: whether it ends at the rounding).
LENGTH_FIELDS = ("num_epochs", "num_train_steps", "discovery.stop_after")
# Fields that do not change what a run computes: where data and outputs go, how often.
BOOKKEEPING_FIELDS = ("log_every_steps", "progress_bar", "checkpoint_every_steps",
                      "keep_checkpoints", "eval_every_epochs", "evals_per_epoch", "save_figures",
                      "track_symmetry", "data_dir", "distributed")
# Fields whose change on resume only changes logging/length, not the math of steps done so far.
RESUMABLE_CHANGES = LENGTH_FIELDS + BOOKKEEPING_FIELDS


def base_config() -> ml_collections.ConfigDict:
  """The paper's reference settings for MNIST (wscnn on rotated MNIST), unlocked."""
  config = ml_collections.ConfigDict()
  config.model = "wscnn"
  config.model_options = variants.model_options("wscnn")
  config.protocol = "rotated_mnist"
  config.protocol_options = ml_collections.ConfigDict()
  config.data_dir = config_dict.placeholder(str)
  config.limit_train = config_dict.placeholder(int)
  config.limit_test = config_dict.placeholder(int)

  config.optimizer = "adamw"
  config.learning_rate = 1e-2
  config.logits_learning_rate = 1e-2
  config.weight_decay = 1e-4
  config.b1 = 0.9
  config.b2 = 0.999
  config.eps = 1e-8
  config.schedule = "constant"
  config.warmup_steps = 0
  config.grad_clip_norm = 0.0

  config.norm_weight = 0.1
  config.entropy_weight = 0.0
  config.isometry_weight = 0.0

  config.num_epochs = 100
  config.num_train_steps = -1
  config.batch_size = 64
  config.eval_batch_size = 500

  config.eval_every_epochs = 1
  config.evals_per_epoch = 1
  config.discovery = ml_collections.ConfigDict()
  config.discovery.at_step = 0
  config.discovery.when_within = 0.0
  config.discovery.check_every_steps = 25
  config.discovery.require_group = True
  config.discovery.reinitialize = False
  config.discovery.stop_after = False
  config.discovery.keep_backbone = False
  config.discovery.expand_backbone = False
  config.discovery.then_train = False
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.seed = 0
  config.log_every_steps = 100
  config.progress_bar = "auto"
  config.track_symmetry = True
  config.save_figures = True

  config.distributed = ml_collections.ConfigDict()
  config.distributed.coordinator_address = config_dict.placeholder(str)
  config.distributed.num_processes = config_dict.placeholder(int)
  config.distributed.process_id = config_dict.placeholder(int)
  return config


def cifar_config() -> ml_collections.ConfigDict:
  """The paper's CIFAR-10 reference settings (wsresnet)."""
  config = base_config()
  config.model = "wsresnet"
  config.protocol = "cifar10"
  config.learning_rate = 1e-4
  config.logits_learning_rate = 1e-2
  config.batch_size = 128
  config.num_epochs = 200
  return config


_REQUIRED = tuple(base_config().keys())


def _fail(name, value, expected):
  raise ValueError(f"config.{name}: {value!r} is not accepted; expected {expected}")


def validate_config(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
  """Raises ``ValueError`` naming the field, the value and what is accepted."""
  keys = set(config.keys())
  unknown = sorted(keys - set(_REQUIRED))
  missing = sorted(set(_REQUIRED) - keys)
  if unknown:
    raise ValueError(f"config: unknown key(s) {unknown}; valid keys: {sorted(_REQUIRED)}")
  if missing:
    raise ValueError(f"config: missing key(s) {missing}; start from "
                     f"ds_symmetry.train.config.base_config()")
  if config.model not in MODEL_NAMES:
    _fail("model", config.model, f"one of {list(MODEL_NAMES)}")
  if config.protocol not in PROTOCOLS:
    _fail("protocol", config.protocol, f"one of {list(PROTOCOLS)}")
  if config.optimizer not in OPTIMIZERS:
    _fail("optimizer", config.optimizer, f"one of {list(OPTIMIZERS)}")
  if config.schedule not in SCHEDULES:
    _fail("schedule", config.schedule, f"one of {list(SCHEDULES)}")
  if config.progress_bar not in PROGRESS_BAR:
    _fail("progress_bar", config.progress_bar, f"one of {list(PROGRESS_BAR)}")
  for name in ("learning_rate", "logits_learning_rate"):
    if not config[name] > 0:
      _fail(name, config[name], "a positive float")
  for name in ("weight_decay", "grad_clip_norm") + tuple(f"{r}_weight" for r in REGULARIZERS):
    if not config[name] >= 0:
      _fail(name, config[name], "a float >= 0")
  for name in ("batch_size", "eval_batch_size", "eval_every_epochs", "evals_per_epoch",
               "checkpoint_every_steps", "keep_checkpoints", "log_every_steps"):
    if not isinstance(config[name], int) or config[name] < 1:
      _fail(name, config[name], "a positive int")
  _check_discovery_fields(config.discovery)
  if not isinstance(config.num_epochs, int) or config.num_epochs < 0:
    _fail("num_epochs", config.num_epochs, "an int >= 0")
  if not isinstance(config.num_train_steps, int) or config.num_train_steps == 0 or (
      config.num_train_steps < -1):
    _fail("num_train_steps", config.num_train_steps, "-1 (use num_epochs) or a positive int")
  if config.num_train_steps < 0 and config.num_epochs < 1:
    _fail("num_epochs", config.num_epochs, "a positive int when num_train_steps is -1")
  if not isinstance(config.warmup_steps, int) or config.warmup_steps < 0:
    _fail("warmup_steps", config.warmup_steps, "an int >= 0")
  if not isinstance(config.seed, int):
    _fail("seed", config.seed, "an int")
  for name in ("limit_train", "limit_test"):
    if config[name] is not None and (not isinstance(config[name], int) or config[name] < 1):
      _fail(name, config[name], "None or a positive int")
  _check_cross_field_rules(config)
  _warn_experimental(config)
  if num_devices is not None:
    for name in ("batch_size", "eval_batch_size"):
      if config[name] % num_devices:
        raise ValueError(
            f"config.{name}: {config[name]} is not divisible by the number of devices "
            f"({num_devices}); choose a multiple of {num_devices}")


_DISCOVERY_FIELDS = tuple(base_config().discovery.keys())


def _check_discovery_fields(discovery) -> None:
  """``config.discovery``'s fields: all there, none unknown, each of its type and range."""
  keys = set(discovery.keys()) if isinstance(discovery, ml_collections.ConfigDict) else set()
  if keys != set(_DISCOVERY_FIELDS):
    raise ValueError(f"config.discovery: has {sorted(keys)}; expected the fields "
                     f"{sorted(_DISCOVERY_FIELDS)} (start from base_config().discovery)")
  if not isinstance(discovery.check_every_steps, int) or discovery.check_every_steps < 1:
    _fail("discovery.check_every_steps", discovery.check_every_steps, "a positive int")
  for name in ("require_group", "reinitialize", "stop_after", "keep_backbone",
               "expand_backbone", "then_train"):
    if not isinstance(discovery[name], bool):
      _fail(f"discovery.{name}", discovery[name], "True or False")
  if not isinstance(discovery.at_step, int) or discovery.at_step < 0:
    _fail("discovery.at_step", discovery.at_step, "an int >= 0 (0 = off)")
  if not isinstance(discovery.when_within, (int, float)) or isinstance(
      discovery.when_within, bool) or not discovery.when_within >= 0:
    _fail("discovery.when_within", discovery.when_within,
          "a float >= 0 (0 = off; the largest distance of a lifting element from its "
          "nearest permutation at which to round the model)")


_WARNED: set[str] = set()  # experimental-option warnings already logged by this process


def _warn_experimental(config: ml_collections.ConfigDict) -> None:
  """One warning line (once per process) naming the options ``config`` uses that the study saw
  fail (``nn.stacks.options.EXPERIMENTAL_OPTIONS``): allowed, kept reproducible, not advised."""
  options = config.model_options.to_dict() if config.model_options is not None else {}
  learned = {"factorise", "tie", "elements"} & set(options)  # else no learned stack
  chosen = stack_options.experimental_choices(options if learned else {},
                                              config.isometry_weight)
  if not chosen:
    return
  line = ("config uses experimental option(s), which the study saw fail to learn a group "
          "(docs/guide/stacks.md): " + "; ".join(
              f"{name}: {stack_options.EXPERIMENTAL_OPTIONS[name]}" for name in chosen))
  if line not in _WARNED:
    _WARNED.add(line)
    logging.warning(line)


# Models that can be rounded to a discovered G-CNN: a learned lifting stack, or the selector.
_DISCOVERABLE = ("wscnn", "wsresnet", "subgroup_cnn")
_MNIST_PROTOCOLS = ("mnist", "rotated_mnist", "partial_rotation", "scaled_mnist")


def _check_cross_field_rules(config: ml_collections.ConfigDict) -> None:
  """The rules that join fields, checked before anything is built or read: each names the
  fields. A combination whose setting would be silently ignored is refused too."""
  accepted = protocol_options(config.protocol)
  unknown = sorted(set(config.protocol_options.keys()) - set(accepted))
  if unknown:
    raise ValueError(f"config.protocol_options: {unknown} not accepted by protocol "
                     f"{config.protocol!r}; accepted: {sorted(accepted)}")
  discovery = config.discovery
  discovering = bool(discovery.at_step or discovery.when_within)
  if discovering and config.model not in _DISCOVERABLE:
    raise ValueError(
        f"config.discovery.at_step / when_within: set for model {config.model!r}, "
        f"which has nothing to discover; expected a model with a learned stack or the "
        f"selector, one of {list(_DISCOVERABLE)} (or set both to 0)")
  if not discovering:
    for name in ("stop_after", "reinitialize", "keep_backbone", "expand_backbone",
                 "then_train"):
      if discovery[name]:
        raise ValueError(f"config.discovery.{name}: True would be ignored: no discovery is "
                         f"set (discovery.at_step and discovery.when_within are 0)")
  if discovery.expand_backbone and not discovery.keep_backbone:
    raise ValueError("config.discovery.expand_backbone: True needs discovery.keep_backbone=True "
                     "(it says what the kept backbone becomes); set both, or neither")
  if discovery.then_train:
    if config.model != "subgroup_cnn":
      raise ValueError(f"config.discovery.then_train: True is not accepted for model "
                       f"{config.model!r}; expected 'subgroup_cnn' (the selector names the "
                       f"subgroup whose G-CNN then trains)")
    for name in ("keep_backbone", "expand_backbone", "reinitialize", "stop_after"):
      if discovery[name]:
        raise ValueError(f"config.discovery.then_train: True contradicts discovery.{name}=True"
                         f" (the first stage ends at the commitment and a fresh G-CNN trains "
                         f"after it); set one of them to False")
  if discovery.keep_backbone:
    if config.model != "subgroup_cnn":
      raise ValueError(f"config.discovery.keep_backbone: True is not accepted for model "
                       f"{config.model!r}; expected 'subgroup_cnn' (a learned stack keeps its "
                       f"weights when rounded anyway)")
    for name in ("reinitialize", "stop_after"):
      if discovery[name]:
        raise ValueError(f"config.discovery.keep_backbone: True contradicts discovery.{name}"
                         f"=True (" + ("fresh weights" if name == "reinitialize" else
                                       "the run ends at the commitment") + "); set one of them"
                         " to False")
  if config.model == "subgroup_cnn":
    if config.protocol not in _MNIST_PROTOCOLS:
      raise ValueError(f"config.model: 'subgroup_cnn' needs square single-channel images; "
                       f"protocol {config.protocol!r} is not accepted; expected one of "
                       f"{list(_MNIST_PROTOCOLS)}")
    if discovery.at_step:
      raise ValueError("config.discovery.at_step: a subgroup_cnn commits by its distribution "
                       "over subgroups; set discovery.when_within (e.g. 0.05) instead")
    if not discovery.require_group:
      raise ValueError("config.discovery.require_group: False would be ignored by a "
                       "subgroup_cnn (its answer is always a group)")
  _check_stack_options(config)
  shape = protocol_image_shape(config)
  if shape is not None:
    check_images_fit(config, shape)


# The group layers' own default (WSGroupConv's), the value a config has when it is not set.
_CAYLEY_TEMPERATURE = variants.model_options("wscnn").cayley_temperature


def _check_stack_options(config: ml_collections.ConfigDict) -> None:
  """A learned model's stack options (``model_options.factorise``, ``tie``, ``elements``, …):
  the combinations ``nn.stacks.options`` accepts, and none that would be ignored."""
  options = config.model_options.to_dict() if config.model_options is not None else {}
  if not {"factorise", "tie", "elements"} & set(options):
    return  # no learned stack (or a hand-made model_options, checked when the model is built)
  factorise, tie = options.get("factorise", "none"), options.get("tie", "none")
  elements = options.get("elements", "independent")
  try:
    stack_options.check_structure(factorise, tie)
    stack_options.check_lift_options(elements, options.get("fix_identity", True),
                                     options.get("constraint", "sinkhorn"))
  except ValueError as error:
    raise ValueError(f"config.model_options.{error}") from None
  if tie == "cyclic" and elements not in stack_options.POWER_ELEMENTS:
    raise ValueError(f"config.model_options.tie: 'cyclic' takes the group factors from the "
                     f"exponents of a lifting stack of powers and needs model_options.elements "
                     f"one of {list(stack_options.POWER_ELEMENTS)}; got elements={elements!r}")
  temperature = options.get("cayley_temperature", _CAYLEY_TEMPERATURE)
  if tie != "cayley" and temperature != _CAYLEY_TEMPERATURE:
    raise ValueError(f"config.model_options.cayley_temperature: {temperature!r} would be "
                     f"ignored: only model_options.tie='cayley' uses it (tie is {tie!r})")


# The images (H, W, C) of each dataset a protocol reads (``data.protocols``).
DATASET_IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1),
                        "cifar10": (32, 32, 3)}


class ImagesDoNotFitError(ValueError):
  """The protocol's images do not fit the model (their channels, or a size below the model's
  smallest input): found before anything of the run is written."""


def protocol_image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int] | None:
  """``(H, W, C)`` of the images ``config.protocol`` (and its ``dataset`` option) gives, from
  :data:`DATASET_IMAGE_SHAPES` without reading them; None for a dataset not listed there."""
  dataset = config.protocol_options.get("dataset") or protocol_options(
      config.protocol)["dataset"]
  return DATASET_IMAGE_SHAPES.get(dataset)


def check_images_fit(config: ml_collections.ConfigDict, image_shape: tuple[int, ...],
                     min_input_size: int | None = None) -> None:
  """Raises :class:`ImagesDoNotFitError` (one line naming the protocol's image shape and the
  model's expectation) unless ``config.model`` takes ``image_shape`` (``(H, W, C)``) images:
  its input channels (``model_options.in_channels`` or the model's default) and, given the
  built model's ``min_input_size``, its smallest input size."""
  height, width, channels = (int(n) for n in image_shape)
  options = config.model_options.to_dict() if config.model_options is not None else {}
  in_channels = dict(MODEL_DEFAULTS.get(config.model, {}), **options).get("in_channels")
  images = (f"config.protocol {config.protocol!r} gives {height}×{width} images with "
            f"{channels} channel{'' if channels == 1 else 's'}")
  if in_channels is not None and int(in_channels) != channels:
    raise ImagesDoNotFitError(
        f"{images}, but model {config.model!r} expects {in_channels} input channel"
        f"{'' if in_channels == 1 else 's'} (model_options.in_channels); use a model made for "
        f"these images (the protocol's config file in configs/) or set "
        f"config.model_options.in_channels={channels}")
  if min_input_size is not None and min(height, width) < min_input_size:
    raise ImagesDoNotFitError(
        f"{images}, but model {config.model!r} needs at least {min_input_size}×"
        f"{min_input_size} pixels (its unpadded convolutions and pools shrink them); use fewer "
        f"model_options.num_blocks, a smaller kernel_size or 'SAME' padding")


def renamed_field(flag: str) -> str | None:
  """One line naming today's field(s) for a ``--config.<field>[=value]`` argument that names
  a field renamed since (else None). A command line with an old name is refused rather than
  translated: translating would keep the old field in the config, and so in every
  ``config.json`` beside the new ones, a second name for one choice; recorded configs are
  translated instead (``run_files.upgrade_config``), since they cannot be rewritten."""
  match = re.fullmatch(r"--config\.([\w.]+)(?:=(.*))?", flag, re.S)
  if match is None:
    return None
  field, value = match.groups()
  if field in run_files.LEGACY_DISCOVERY:
    return (f"--config.{field} is now --config.discovery.{run_files.LEGACY_DISCOVERY[field]} "
            f"(the discovery settings are one block, config.discovery)")
  if field == "model_options.sharing":
    pair = run_files.LEGACY_SHARING.get(value or "")
    new = ("--config.model_options.factorise=... --config.model_options.tie=..."
           if pair is None else
           f"--config.model_options.factorise={pair[0]} --config.model_options.tie={pair[1]}")
    return (f"--config.model_options.sharing is now two options, what the group layers' stack "
            f"is factorised into and what its factors are tied to: use {new} "
            f"(the pairs: ds_symmetry.nn.stacks.STRUCTURES)")
  return None


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _parse_option(flag: str, raw: str, kind: type | None, none_ok: bool):
  """``raw`` (a command-line string) as a value of ``kind`` (None: an int, a float or a
  string, whichever reads); ``"None"`` only where ``none_ok``."""
  text = raw.strip()
  if none_ok and text.lower() in ("none", "null"):
    return None
  try:
    if kind is bool:
      if text.lower() in _TRUE + _FALSE:
        return text.lower() in _TRUE
      raise ValueError(text)
    if kind is int:
      return int(text)
    if kind is float:
      return float(text)
    if kind is str:
      return raw
    for parse in (int, float):
      try:
        return parse(text)
      except ValueError:
        pass
    return raw
  except ValueError:
    names = {bool: "True or False", int: "an int", float: "a float"}
    expected = names.get(kind, str(kind)) + (" or None" if none_ok else "")
    raise ValueError(f"{flag}: {raw!r} is not accepted; expected {expected}") from None


def set_protocol_options(config: ml_collections.ConfigDict,
                         options: list[tuple[str, str]]) -> None:
  """Sets ``config.protocol_options[key]`` from command-line strings ``(key, value)``
  (``--config.protocol_options.KEY=VALUE``), whether or not ``config`` has the field yet: any
  option ``config.protocol`` accepts (``data.protocols.protocol_options``), read as the type of
  the field, or of the option's default. Raises ``ValueError`` (one line, naming the flag and
  listing the accepted names) for another name or a value of the wrong type."""
  if not options:
    return
  if config.protocol not in PROTOCOLS:
    _fail("protocol", config.protocol, f"one of {list(PROTOCOLS)}")
  accepted = protocol_options(config.protocol)
  current = config.protocol_options
  for key, raw in options:
    flag = f"--config.protocol_options.{key}"
    if key not in accepted:
      raise ValueError(f"{flag}: {key!r} is not an option of protocol {config.protocol!r}; "
                       f"accepted: {sorted(accepted)}")
    default = accepted[key]
    kind = type(default) if default is not None else (
        current.get_ref(key).get_type() if key in current else None)
    value = _parse_option(flag, raw, kind if kind is not type(None) else None,
                          none_ok=default is None)
    try:
      with config.unlocked():
        current[key] = value
    except TypeError as error:  # the config file gave the field another type
      raise ValueError(f"{flag}: {raw!r} is not accepted by the config's field "
                       f"({_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
  lines = str(error).strip().splitlines()
  return lines[0] if lines else type(error).__name__


def config_differences(saved: dict, current: dict, *,
                       recorded_only: bool = False) -> tuple[list[str], list[str]]:
  """``(harmless, breaking)``: the fields in which two config dicts differ, split by
  :data:`RESUMABLE_CHANGES` (``run_files.diff_configs``; ``recorded_only``: ignore fields the
  saved config does not have, as for a finished run recorded before they existed). A field is
  named by its top-level key (``model_options``), or by its dotted name where that is what
  :data:`RESUMABLE_CHANGES` lists (``discovery.stop_after``)."""
  keys = sorted({_field_name(key) for key, _, _ in
                 run_files.diff_configs(saved, current, recorded_only=recorded_only)})
  return ([k for k in keys if k in RESUMABLE_CHANGES],
          [k for k in keys if k not in RESUMABLE_CHANGES])


def _field_name(dotted: str) -> str:
  """The name :func:`config_differences` gives a differing dotted field."""
  for name in RESUMABLE_CHANGES:
    if dotted == name or dotted.startswith(name + "."):
      return name
  return dotted.split(".")[0]


def workdir_config_differences(workdir: str, saved: dict,
                               current: dict) -> tuple[list[str], list[str]]:
  """:func:`config_differences` of ``workdir``'s saved config and ``current``, as a rerun in
  ``workdir`` is judged. Without a checkpoint nothing is resumed: the run starts over, and it
  is another run only if a field the saved config records has another value (fields added to
  the config since the saved run are not a conflict)."""
  return config_differences(saved, current,
                            recorded_only=not run_files.checkpoint_steps(workdir))
