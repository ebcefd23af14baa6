"""The trainer's building blocks on their own (``ds_symmetry.train.steps``): the optimizer's two
learning rates, the schedules, gradient clipping, and a bfloat16 model through the train step.
End-to-end runs are in ``test_train.py``."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ds_symmetry.models import create_model, regularizer_terms
from ds_symmetry.nn import REGULARIZERS, parameter_groups
from ds_symmetry.train import base_config, make_mesh
from ds_symmetry.train import steps


def _config(**fields):
  config = base_config()
  for key, value in fields.items():
    config[key] = value
  return config


def _adam_first_update(lr, grad, eps):
  """AdamW's first bias-corrected step without weight decay: ``-lr · g / (|g| + eps)``."""
  return -lr * grad / (np.abs(grad) + eps)


def test_logits_get_their_own_learning_rate():
  config = _config(learning_rate=1e-3, logits_learning_rate=5e-2, weight_decay=0.0)
  params = {"conv/weight": jnp.zeros((3,)), "conv/logits": jnp.zeros((2, 2))}
  labels = {"conv/weight": "weights", "conv/logits": "logits"}
  tx = steps.make_optimizer(config, labels, total_steps=10)
  grads = {"conv/weight": jnp.full((3,), 0.3), "conv/logits": jnp.full((2, 2), -2.0)}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["conv/weight"],
                             _adam_first_update(1e-3, np.full(3, 0.3), config.eps), rtol=1e-5)
  np.testing.assert_allclose(updates["conv/logits"],
                             _adam_first_update(5e-2, np.full((2, 2), -2.0), config.eps),
                             rtol=1e-5)


def test_weight_decay_reaches_the_logits_too():
  config = _config(learning_rate=1e-3, logits_learning_rate=1e-2, weight_decay=0.5)
  params = {"w": jnp.ones((2,)), "logits": jnp.ones((2,))}
  tx = steps.make_optimizer(config, {"w": "weights", "logits": "logits"}, total_steps=10)
  zero = {"w": jnp.zeros((2,)), "logits": jnp.zeros((2,))}
  updates, _ = tx.update(zero, tx.init(params), params)
  # With zero gradients only the decoupled decay moves the parameters: -lr · wd · p.
  np.testing.assert_allclose(updates["w"], -1e-3 * 0.5, rtol=1e-6)
  np.testing.assert_allclose(updates["logits"], -1e-2 * 0.5, rtol=1e-6)


def test_model_labels_put_every_representation_logit_and_nothing_else_in_the_logits_group():
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=2, num_blocks=2)
  labels = dict(nnx.to_flat_state(parameter_groups(model)))
  params = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  assert labels.keys() == params.keys()
  logits = sorted(path for path, label in labels.items() if label == "logits")
  assert logits and all(path[-1] == "logits" for path in logits)
  assert set(labels.values()) == {"weights", "logits"}
  # Two layers, 3 learned matrices each: 25×25 (lifting, k²) and 100×100 (group, G·k²).
  assert sum(params[path].size for path in logits) == 3 * 25**2 + 3 * 100**2


def test_nnx_optimizer_gives_the_model_logits_their_own_rate():
  """The trainer's optimizer on a real model (``nnx.Optimizer`` over ``nnx.Param`` with
  ``parameter_groups``): one step moves every weight by the weight rate, every logit by the
  logits' rate."""
  config = _config(learning_rate=1e-3, logits_learning_rate=5e-2, weight_decay=0.0)
  model = create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=2, num_blocks=2)
  before = [(path, np.asarray(variable[...]))
            for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param))]
  optimizer = nnx.Optimizer(model, steps.make_optimizer(config, parameter_groups(model), 10),
                            wrt=nnx.Param)
  grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
  optimizer.update(model, grads)
  after = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  for path, value in before:
    rate = 5e-2 if path[-1] == "logits" else 1e-3
    np.testing.assert_allclose(after[path][...] - value,
                               _adam_first_update(rate, 1.0, config.eps), rtol=1e-4,
                               err_msg=str(path))


def _schedule_values(config, peak, total, points):
  schedule = steps.make_schedule(config, peak, total)
  return [float(schedule(t)) if callable(schedule) else float(schedule) for t in points]


def test_constant_schedule_with_and_without_warmup():
  assert _schedule_values(_config(schedule="constant"), 0.1, 100, [0, 50, 100]) == [0.1] * 3
  values = _schedule_values(_config(schedule="constant", warmup_steps=10), 0.1, 100,
                            [0, 5, 10, 60])
  np.testing.assert_allclose(values, [0.0, 0.05, 0.1, 0.1], rtol=1e-6, atol=1e-9)


def test_cosine_schedule_decays_from_peak_to_zero():
  total, peak = 40, 0.2
  points = [0, 10, 20, 30, 40]
  expected = [0.5 * peak * (1 + math.cos(math.pi * t / total)) for t in points]
  np.testing.assert_allclose(_schedule_values(_config(schedule="cosine"), peak, total, points),
                             expected, rtol=1e-5, atol=1e-8)


def test_warmup_cosine_schedule():
  total, warmup, peak = 50, 10, 0.3
  config = _config(schedule="warmup_cosine", warmup_steps=warmup)
  points = [0, 5, 10, 30, 50]
  expected = [0.0, 0.15, peak, 0.5 * peak * (1 + math.cos(math.pi * 20 / 40)), 0.0]
  np.testing.assert_allclose(_schedule_values(config, peak, total, points), expected,
                             rtol=1e-5, atol=1e-8)


def test_schedule_reaches_both_parameter_groups():
  config = _config(schedule="cosine", learning_rate=1e-3, logits_learning_rate=1e-2,
                   weight_decay=0.0)
  params = {"w": jnp.zeros(()), "l": jnp.zeros(())}
  tx = steps.make_optimizer(config, {"w": "weights", "l": "logits"}, total_steps=4)
  state = tx.init(params)
  grads = {"w": jnp.ones(()), "l": jnp.ones(())}
  seen = []
  for _ in range(5):
    updates, state = tx.update(grads, state, params)
    seen.append((float(updates["w"]), float(updates["l"])))
  assert abs(seen[0][0] + 1e-3) < 1e-6 and abs(seen[0][1] + 1e-2) < 1e-5
  assert seen[-1] == (0.0, 0.0)  # the cosine reached zero at step 4 for both groups


@pytest.mark.parametrize("clip", [0.0, 1.0])
def test_gradient_clipping_by_global_norm(clip):
  # A large Adam eps makes the first step depend on the gradient's scale, so clipping shows.
  config = _config(learning_rate=1.0, logits_learning_rate=1.0, weight_decay=0.0, eps=1.0,
                   grad_clip_norm=clip)
  params = {"w": jnp.zeros((2,)), "l": jnp.zeros((2,))}
  tx = steps.make_optimizer(config, {"w": "weights", "l": "logits"}, total_steps=10)
  grads = {"w": jnp.array([3.0, 4.0]), "l": jnp.array([0.0, 0.0])}  # global norm 5
  updates, _ = tx.update(grads, tx.init(params), params)
  g = np.array([3.0, 4.0]) * (min(1.0, clip / 5.0) if clip else 1.0)
  np.testing.assert_allclose(updates["w"], _adam_first_update(1.0, g, 1.0), rtol=1e-5)


_IMAGES = np.random.default_rng(0).integers(0, 256, (16, 12, 12, 1), dtype=np.uint8)
_LABELS = np.random.default_rng(1).integers(0, 10, (16,)).astype(np.int32)


def _small_wscnn(compute_dtype):
  return create_model("wscnn", num_classes=10, rngs=nnx.Rngs(0), channels=2, num_blocks=2,
                      compute_dtype=compute_dtype)


def _augment(key, images):
  del key
  return images.astype(jnp.float32) / 255.0


def _steps(model, config, total_steps=3):
  tx = steps.make_optimizer(config, parameter_groups(model), total_steps=total_steps)
  # Traced once for all steps: a second trace would mean the step recompiled.
  chex.clear_trace_counter()
  augment = chex.assert_max_traces(_augment, n=1)
  return steps.Steps(steps.TrainState(model, tx), augment, seed=0,
                     weights=steps.regularizer_weights(config), mesh=make_mesh())


def _run(train_steps, state, num_steps):
  images = jax.device_put(_IMAGES, train_steps.replicated)
  labels = jax.device_put(_LABELS, train_steps.replicated)
  losses = []
  for step in range(num_steps):
    indices = jnp.arange(8, dtype=jnp.int32) + 8 * (step % 2)
    state, metrics = train_steps.train(state, images, labels, indices)
    losses.append(float(metrics["loss"]))
  return losses, state


def _bfloat16_train_run(num_steps=3):
  train_steps = _steps(_small_wscnn("bfloat16"), _config(learning_rate=1e-3), num_steps)
  return _run(train_steps, train_steps.initial_state, num_steps)


def test_bfloat16_model_trains_through_the_train_step_with_float32_parameters():
  losses, state = _bfloat16_train_run()
  assert all(np.isfinite(losses)) and int(state["optimizer"]["step"][...]) == 3
  params = nnx.to_pure_dict(nnx.filter_state(state["model"], nnx.Param))
  chex.assert_trees_all_equal_dtypes(params, jax.tree.map(lambda x: x.astype(jnp.float32),
                                                          params))
  # The first step's loss is the float32 model's CE + 0.1·norm on the same batch, up to
  # bfloat16 convolutions (same seed, so the same initial parameters).
  reference = _small_wscnn(None)
  logits = reference(jnp.asarray(_IMAGES[:8], jnp.float32) / 255.0)
  cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, _LABELS[:8]).mean()
  expected = float(cross_entropy + 0.1 * regularizer_terms(reference)["norm"])
  assert losses[0] == pytest.approx(expected, rel=2e-2)


def test_loss_weighs_every_regularizer_by_its_config_weight():
  config = _config(norm_weight=0.3, entropy_weight=0.2, isometry_weight=0.5)
  assert steps.regularizer_weights(config) == {name: config[f"{name}_weight"]
                                               for name in REGULARIZERS}
  model = _small_wscnn(None)
  terms = regularizer_terms(model)
  logits = model(jnp.asarray(_IMAGES[:8], jnp.float32) / 255.0)
  expected = float(optax.softmax_cross_entropy_with_integer_labels(logits, _LABELS[:8]).mean()
                   + sum(config[f"{name}_weight"] * terms[name] for name in REGULARIZERS))
  train_steps = _steps(_small_wscnn(None), config)
  (loss,), _ = _run(train_steps, train_steps.initial_state, 1)
  assert loss == pytest.approx(expected, rel=1e-5)


def test_running_metrics_average_the_epoch_and_reset():
  train_steps = _steps(_small_wscnn(None), _config())
  losses, state = _run(train_steps, train_steps.initial_state, 3)
  chunks = steps.chunk_test_set(_IMAGES[:5].astype(np.float32) / 255.0, _LABELS[:5], 4)
  results = train_steps.evaluate(state, *chunks)
  assert float(results["train_loss"]) == pytest.approx(np.mean(losses), rel=1e-6)
  assert 0.0 <= float(results["train_accuracy"]) <= 1.0
  assert float(results["test_loss"]) > float(results["test_cross_entropy"]) > 0
  state = train_steps.reset_metrics(state)
  for metric in ("loss", "cross_entropy", "accuracy"):
    assert int(state["metrics"][metric]["count"][...]) == 0
    assert float(state["metrics"][metric]["total"][...]) == 0.0


def test_checkpoint_round_trip_resumes_bit_for_bit(tmp_path):
  """Steps 3-4 from a checkpoint at step 2 (restored into freshly built steps, as a resumed
  run does) equal steps 3-4 of an uninterrupted run."""
  from ds_symmetry.train.checkpointing import Checkpointer  # pylint: disable=import-outside-toplevel
  config = _config(learning_rate=1e-3)
  uninterrupted = _steps(_small_wscnn(None), config)
  _, first = _run(uninterrupted, uninterrupted.initial_state, 2)
  checkpointer = Checkpointer(tmp_path / "checkpoints", keep=2)
  checkpointer.save(2, uninterrupted.checkpoint(first))
  checkpointer.close()
  _, reference = _run(uninterrupted, first, 2)

  fresh = _steps(_small_wscnn(None), config)
  checkpointer = Checkpointer(tmp_path / "checkpoints", keep=2)
  step, arrays = checkpointer.restore(fresh.abstract_checkpoint())
  checkpointer.close()
  assert step == 2
  _, resumed = _run(fresh, fresh.from_checkpoint(arrays), 2)
  chex.assert_trees_all_equal(fresh.checkpoint(resumed), uninterrupted.checkpoint(reference))
  assert int(resumed["optimizer"]["step"][...]) == 4


def test_reseed_restarts_every_stream_from_the_key():
  class TwoDropouts(nnx.Module):
    def __init__(self):
      self.first = nnx.Dropout(0.5, rngs=nnx.Rngs(1))
      self.second = nnx.Dropout(0.5, rngs=nnx.Rngs(1))

    def __call__(self, x):
      return self.first(x), self.second(x)

  model = TwoDropouts()
  x = jnp.ones((64,))
  steps.reseed(model, jax.random.key(3))
  a1, a2 = model(x)
  steps.reseed(model, jax.random.key(3))
  b1, b2 = model(x)
  steps.reseed(model, jax.random.key(4))
  c1, _ = model(x)
  np.testing.assert_array_equal(a1, b1)
  np.testing.assert_array_equal(a2, b2)
  assert not np.array_equal(a1, a2)  # each stream gets its own key
  assert not np.array_equal(a1, c1)
