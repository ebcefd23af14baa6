"""The functional core of training: optimizer, train step, evaluation step.

The model is split once into a static graph and flat ``{"a/b/c": array}`` dicts of parameters
and batch statistics; the jitted steps rebuild it with ``nnx.merge``. The trainer only uses
the model interface of ``ds_symmetry.nn.introspection``; it never looks at model classes.

Train state (a plain pytree, what a checkpoint holds)::

  {"step": int32 [], "params": {path: array}, "batch_stats": {path: array},
   "opt_state": optax state, "train_sums": {"loss", "cross_entropy", "correct", "count"}}

``train_sums`` accumulate over the current epoch (reset at epoch start), so a run resumed
mid-epoch reports exactly the metrics of an uninterrupted one.

Randomness: the step's key is ``fold_in(key(seed), step)``, split into the augmentation key
and the dropout key (every RNG stream of the model is reset from it), so no key lives in the state.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from ds_symmetry.nn.introspection import max_marginal_error, regularizer_terms
from ds_symmetry.nn.weight_sharing import RepresentationLogits

TRAIN_SUMS = ("loss", "cross_entropy", "correct", "count")


def _key(path) -> str:
  return "/".join(str(p) for p in path)


class ModelFunctions:
  """A model split into graph + flat arrays, and rebuilt inside jitted functions."""

  def __init__(self, model: nnx.Module):
    model.train()
    self.train_graphdef, params, batch_stats, self.rest = nnx.split(
        model, nnx.Param, nnx.BatchStat, ...)
    model.eval()
    self.eval_graphdef = nnx.split(model, nnx.Param, nnx.BatchStat, ...)[0]
    model.train()
    self._params = [(_key(p), p, v) for p, v in nnx.to_flat_state(params)]
    self._batch_stats = [(_key(p), p, v) for p, v in nnx.to_flat_state(batch_stats)]
    self._rest = list(nnx.to_flat_state(self.rest))

  def initial_params(self) -> dict[str, jax.Array]:
    return {key: var.get_value() for key, _, var in self._params}

  def initial_batch_stats(self) -> dict[str, jax.Array]:
    return {key: var.get_value() for key, _, var in self._batch_stats}

  def param_labels(self) -> dict[str, str]:
    """``"logits"`` for ``RepresentationLogits``, ``"weights"`` for every other parameter."""
    return {key: "logits" if isinstance(var, RepresentationLogits) else "weights"
            for key, _, var in self._params}

  def build(self, params, batch_stats, train: bool, rng_key=None) -> nnx.Module:
    """The model from flat arrays; every RNG stream reseeded from ``rng_key`` if given."""
    rest = []
    for index, (path, var) in enumerate(self._rest):
      if rng_key is not None and isinstance(var, nnx.RngKey):
        var = var.replace(jax.random.fold_in(rng_key, index))
      elif rng_key is not None and isinstance(var, nnx.RngCount):
        var = var.replace(jnp.zeros_like(var.get_value()))
      else:
        var = var.replace(var.get_value())
      rest.append((path, var))
    param_state = nnx.from_flat_state([(p, v.replace(params[k])) for k, p, v in self._params])
    stat_state = nnx.from_flat_state(
        [(p, v.replace(batch_stats[k])) for k, p, v in self._batch_stats])
    graphdef = self.train_graphdef if train else self.eval_graphdef
    return nnx.merge(graphdef, param_state, stat_state, nnx.from_flat_state(rest))

  @staticmethod
  def flat_batch_stats(model) -> dict[str, jax.Array]:
    return {_key(p): v.get_value()
            for p, v in nnx.to_flat_state(nnx.state(model, nnx.BatchStat))}


def make_schedule(config: ml_collections.ConfigDict, peak: float, total_steps: int):
  if config.schedule == "constant":
    if config.warmup_steps:
      return optax.join_schedules(
          [optax.linear_schedule(0.0, peak, config.warmup_steps), optax.constant_schedule(peak)],
          [config.warmup_steps])
    return peak
  if config.schedule == "cosine":
    return optax.cosine_decay_schedule(peak, max(total_steps, 1))
  return optax.warmup_cosine_decay_schedule(0.0, peak, config.warmup_steps,
                                            max(total_steps, config.warmup_steps + 1))


def make_optimizer(config: ml_collections.ConfigDict, labels: dict[str, str],
                   total_steps: int) -> optax.GradientTransformation:
  """AdamW (weight decay on every parameter, logits included) with the logits' own rate."""
  def adamw(peak):
    return optax.adamw(make_schedule(config, peak, total_steps), b1=config.b1, b2=config.b2,
                       eps=config.eps, weight_decay=config.weight_decay)
  tx = optax.multi_transform(
      {"weights": adamw(config.learning_rate), "logits": adamw(config.logits_learning_rate)},
      labels)
  if config.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx


def init_state(functions: ModelFunctions, tx: optax.GradientTransformation) -> dict[str, Any]:
  params = functions.initial_params()
  return {
      "step": jnp.zeros((), jnp.int32),
      "params": params,
      "batch_stats": functions.initial_batch_stats(),
      "opt_state": tx.init(params),
      "train_sums": {name: jnp.zeros((), jnp.float32) for name in TRAIN_SUMS},
  }


def reset_train_sums(state):
  return dict(state, train_sums=jax.tree.map(jnp.zeros_like, state["train_sums"]))


def _weighted_regularizers(terms, norm_weight, entropy_weight, isometry_weight):
  return (norm_weight * terms["norm"] + entropy_weight * terms["entropy"]
          + isometry_weight * terms["isometry"])


def make_train_step(functions: ModelFunctions, tx: optax.GradientTransformation, augment: Callable,
                    *, seed: int, norm_weight: float, entropy_weight: float,
                    mesh: jax.sharding.Mesh, isometry_weight: float = 0.0) -> Callable:
  """``train_step(state, train_images, train_labels, indices) -> (state, metrics)``.

  ``train_images`` uint8 ``[N, H, W, C]`` and ``train_labels`` ``[N]`` are device-resident and
  replicated; ``indices`` int32 ``[B]`` is sharded over the ``data`` axis. Augmentation,
  forward, backward and the update run in one jitted call; ``state`` is donated.
  """
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))

  def loss_fn(params, batch_stats, images, labels, dropout_key):
    model = functions.build(params, batch_stats, train=True, rng_key=dropout_key)
    logits = model(images).astype(jnp.float32)
    cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    terms = regularizer_terms(model)
    loss = cross_entropy + _weighted_regularizers(terms, norm_weight, entropy_weight,
                                                  isometry_weight)
    correct = jnp.sum(jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    aux = (functions.flat_batch_stats(model),
           {"loss": loss, "cross_entropy": cross_entropy, "correct": correct,
            "norm": terms["norm"], "entropy": terms["entropy"],
            "isometry": terms["isometry"]})
    return loss, aux

  def train_step(state, train_images, train_labels, indices):
    key = jax.random.fold_in(jax.random.key(seed), state["step"])
    augment_key, dropout_key = jax.random.split(key)
    raw = jax.lax.with_sharding_constraint(train_images[indices], batch_sharding)
    labels = jax.lax.with_sharding_constraint(train_labels[indices], batch_sharding)
    images = augment(augment_key, raw)
    images = jax.lax.with_sharding_constraint(images, batch_sharding)
    (_, (batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"], state["batch_stats"], images, labels, dropout_key)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    batch = jnp.float32(indices.shape[0])
    sums = state["train_sums"]
    sums = {"loss": sums["loss"] + metrics["loss"] * batch,
            "cross_entropy": sums["cross_entropy"] + metrics["cross_entropy"] * batch,
            "correct": sums["correct"] + metrics["correct"],
            "count": sums["count"] + batch}
    new_state = {"step": state["step"] + 1, "params": params, "batch_stats": batch_stats,
                 "opt_state": opt_state, "train_sums": sums}
    return new_state, metrics

  return jax.jit(train_step, donate_argnums=(0,),
                 in_shardings=(replicated, replicated, replicated, batch_sharding),
                 out_shardings=(replicated, replicated))


def make_eval_step(functions: ModelFunctions, *, norm_weight: float, entropy_weight: float,
                   mesh: jax.sharding.Mesh, isometry_weight: float = 0.0) -> Callable:
  """``eval_step(params, batch_stats, images [K,B,H,W,C], labels [K,B], mask [K,B]) -> dict``.

  Runs the whole (padded, chunked) test set in one call with ``lax.map`` over chunks; returns
  test loss (cross-entropy + the regularisers, as in training), test cross-entropy, accuracy,
  regulariser values and the largest Sinkhorn marginal error.
  """
  replicated = NamedSharding(mesh, P())
  chunked = NamedSharding(mesh, P(None, "data"))

  def eval_step(params, batch_stats, images, labels, mask):
    model = functions.build(params, batch_stats, train=False)

    def chunk(args):
      x, y, m = args
      logits = model(x).astype(jnp.float32)
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
      return jnp.sum(ce * m), jnp.sum((jnp.argmax(logits, -1) == y) * m)

    ce_sums, correct = jax.lax.map(chunk, (images, labels, mask))
    count = jnp.sum(mask)
    terms = regularizer_terms(model)
    cross_entropy = jnp.sum(ce_sums) / count
    return {"test_cross_entropy": cross_entropy,
            "test_loss": cross_entropy + _weighted_regularizers(
                terms, norm_weight, entropy_weight, isometry_weight),
            "test_accuracy": jnp.sum(correct) / count,
            "norm": terms["norm"], "entropy": terms["entropy"], "isometry": terms["isometry"],
            "marginal_error": max_marginal_error(model)}

  return jax.jit(eval_step, in_shardings=(replicated, replicated, chunked, chunked, chunked),
                 out_shardings=replicated)


def chunk_test_set(images: np.ndarray, labels: np.ndarray, chunk: int):
  """Pads to a multiple of ``chunk``: ``images [K, chunk, ...]``, ``labels``/``mask [K, chunk]``."""
  count = images.shape[0]
  chunks = -(-count // chunk)
  pad = chunks * chunk - count
  images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
  labels = np.concatenate([labels.astype(np.int32), np.zeros((pad,), np.int32)])
  mask = np.concatenate([np.ones((count,), np.float32), np.zeros((pad,), np.float32)])
  return (images.reshape((chunks, chunk) + images.shape[1:]), labels.reshape(chunks, chunk),
          mask.reshape(chunks, chunk))

