"""The functional core of training: the train state, the optimizer, the jitted steps.

One NNX idiom, Flax's own for jitted training loops: the model, its ``nnx.Optimizer`` and the
epoch's running ``nnx.MultiMetric`` live in one :class:`TrainState` module. :class:`Steps`
splits it once (``nnx.split``) into a static graph, the RNG streams and an ``nnx.State``
pytree; the jitted functions take and return that state and rebuild the objects with
``nnx.merge`` inside (``jax.jit`` with explicit shardings and donation: the state and the
training data replicated, batches sharded over the mesh's ``data`` axis). The trainer only uses
the model interface of ``ds_symmetry.nn.introspection``; it never looks at model classes.

A checkpoint holds the state as ``nnx.to_pure_dict`` (:meth:`Steps.checkpoint`)::

  {"model":     {<layer path>: {<variable>: array}},   # parameters and batch statistics
   "optimizer": {"step": uint32 [], "opt_state": <optax state of the parameters>},
   "metrics":   {"loss" | "cross_entropy" | "accuracy": {"total": float32 [], "count": int32 []}}}

``optimizer.step`` counts the run's train steps (carried over a discovery, whose optimizer
starts afresh); the metrics are running means over the current epoch (reset at its start), so a
run resumed mid-epoch reports exactly the metrics of an uninterrupted one.

Parameter groups: one ``optax.multi_transform`` keyed by ``parameter_groups(model)`` gives the
``RepresentationLogits`` their own learning rate; clipping acts on the global norm of all.

Loss: cross-entropy + ``regularizer_loss(terms, weights)``, i.e. Σ_name ``weights[name]`` ·
``terms[name]`` over ``REGULARIZERS`` (the trainer's weights: ``config.<name>_weight``).

Randomness: the key of step ``s`` is ``fold_in(key(seed), s)``, split into the augmentation key
and the model's key (every RNG stream of the model restarts from it), so no key is checkpointed.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from ds_symmetry.nn.introspection import (REGULARIZERS, max_marginal_error, regularizer_loss,
                                          regularizer_terms, representation_stacks)


def regularizer_weights(config: ml_collections.ConfigDict) -> dict[str, float]:
  """``{name: config.<name>_weight}`` for every name in ``REGULARIZERS``."""
  return {name: float(config[f"{name}_weight"]) for name in REGULARIZERS}


def make_schedule(config: ml_collections.ConfigDict, peak: float, total_steps: int):
  """``config.schedule`` ("constant" with optional linear warmup, "cosine", "warmup_cosine")
  peaking at ``peak``: a float or an optax schedule ``step -> rate``."""
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


def make_optimizer(config: ml_collections.ConfigDict, labels: Any,
                   total_steps: int) -> optax.GradientTransformation:
  """AdamW (weight decay on every parameter, logits included) with the logits' own rate.

  ``labels``: ``"weights"`` / ``"logits"`` per parameter, a pytree (prefix) of the parameters;
  for a model, ``ds_symmetry.nn.parameter_groups(model)``.
  """
  def adamw(peak):
    return optax.adamw(make_schedule(config, peak, total_steps), b1=config.b1, b2=config.b2,
                       eps=config.eps, weight_decay=config.weight_decay)
  tx = optax.multi_transform(
      {"weights": adamw(config.learning_rate), "logits": adamw(config.logits_learning_rate)},
      labels)
  if config.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx


class TrainState(nnx.Module):
  """What a train step reads and writes: the model, its optimizer, the epoch's running metrics."""

  def __init__(self, model: nnx.Module, tx: optax.GradientTransformation):
    self.model = model
    self.optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    self.metrics = nnx.MultiMetric(loss=nnx.metrics.Average("loss"),
                                   cross_entropy=nnx.metrics.Average("cross_entropy"),
                                   accuracy=nnx.metrics.Accuracy())


def reseed(model: nnx.Module, key: jax.Array) -> None:
  """Restarts every RNG stream of ``model`` (e.g. dropout) from its own key folded from ``key``."""
  streams = [node for _, node in nnx.iter_graph(model) if isinstance(node, nnx.RngStream)]
  for index, stream in enumerate(streams):
    stream.key.set_value(jax.random.fold_in(key, index))
    stream.count.set_value(jnp.zeros((), jnp.uint32))


def _cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


class Steps:
  """A :class:`TrainState` split once, and its jitted functions on ``mesh``.

  ``initial_state`` is the (replicated) state to start from; every function takes a state:

  * ``train(state, train_images, train_labels, indices) -> (state, metrics)``: one step.
    ``train_images`` uint8 ``[N, H, W, C]`` and ``train_labels`` int32 ``[N]`` are replicated,
    ``indices`` int32 ``[B]`` sharded over ``data``; augmentation, forward, backward and the
    update run in one call; ``state`` is donated. ``metrics``: the batch's ``loss``,
    ``cross_entropy``, ``correct`` (a count) and every regulariser term. A model with an
    ``objective(images, labels) -> (loss, logits, terms)`` method (``nn.SubgroupSelector``)
    is trained on that loss (plus the regularisers); its ``terms`` join the metrics.
  * ``evaluate(state, images [K,B,H,W,C], labels [K,B], mask [K,B]) -> dict``: the whole
    (padded, chunked: :func:`chunk_test_set`) test set in one call (``lax.map`` over chunks):
    ``test_loss`` (cross-entropy + the weighted regularisers, as in training),
    ``test_cross_entropy``, ``test_accuracy``, the regulariser terms, ``marginal_error`` (the
    largest Sinkhorn marginal error), and the epoch's running ``train_loss``,
    ``train_cross_entropy``, ``train_accuracy``.
  * ``stacks(state) -> {layer: [G, d, d]}``: every weight-sharing layer's stack.
  * ``reset_metrics(state) -> state``: the running metrics set to zero (``state`` donated).
  """

  def __init__(self, train_state: TrainState, augment: Callable, *, seed: int,
               weights: Mapping[str, float], mesh: jax.sharding.Mesh):
    train_state.model.train()
    self.graphdef, self._host_rngs, state = nnx.split(train_state, nnx.RngState, ...)
    replicated = NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P("data"))
    chunked = NamedSharding(mesh, P(None, "data"))
    self.replicated = replicated
    rngs = jax.device_put(self._host_rngs, replicated)
    self.initial_state = jax.device_put(state, replicated)
    weights = dict(weights)

    def merge(state) -> TrainState:  # fresh RNG variables: reseed() writes them in the trace
      return nnx.merge(self.graphdef, jax.tree.map(lambda x: x, rngs), state)

    def split(train_state: TrainState):
      return nnx.split(train_state, nnx.RngState, ...)[2]

    def train(state, train_images, train_labels, indices):
      ts = merge(state)
      key = jax.random.fold_in(jax.random.key(seed), ts.optimizer.step[...])
      augment_key, model_key = jax.random.split(key)
      reseed(ts.model, model_key)
      labels = jax.lax.with_sharding_constraint(train_labels[indices], batch)
      raw = jax.lax.with_sharding_constraint(train_images[indices], batch)
      images = jax.lax.with_sharding_constraint(augment(augment_key, raw), batch)

      def loss_fn(model):
        terms = regularizer_terms(model)
        if hasattr(model, "objective"):  # a model with its own training objective
          objective, logits, extra = model.objective(images, labels)
          cross_entropy = _cross_entropy(logits, labels).mean()
          return (objective + regularizer_loss(terms, weights),
                  (logits, cross_entropy, dict(terms, **extra)))
        logits = model(images).astype(jnp.float32)
        cross_entropy = _cross_entropy(logits, labels).mean()
        return cross_entropy + regularizer_loss(terms, weights), (logits, cross_entropy, terms)

      (loss, (logits, cross_entropy, terms)), grads = nnx.value_and_grad(
          loss_fn, has_aux=True)(ts.model)
      ts.optimizer.update(ts.model, grads)
      ts.metrics.update(loss=loss, cross_entropy=cross_entropy, logits=logits, labels=labels)
      correct = jnp.sum(jnp.argmax(logits, -1) == labels).astype(jnp.float32)
      return split(ts), {"loss": loss, "cross_entropy": cross_entropy, "correct": correct,
                         **terms}

    def evaluate(state, images, labels, mask):
      ts = merge(state)
      model = ts.model
      model.eval()

      def chunk(args):
        x, y, m = args
        logits = model(x).astype(jnp.float32)
        return (jnp.sum(_cross_entropy(logits, y) * m),
                jnp.sum((jnp.argmax(logits, -1) == y) * m))

      ce_sums, correct = jax.lax.map(chunk, (images, labels, mask))
      count = jnp.sum(mask)
      terms = regularizer_terms(model)
      cross_entropy = jnp.sum(ce_sums) / count
      train = ts.metrics.compute()
      return {"test_cross_entropy": cross_entropy,
              "test_loss": cross_entropy + regularizer_loss(terms, weights),
              "test_accuracy": jnp.sum(correct) / count, **terms,
              "marginal_error": max_marginal_error(model),
              **{f"train_{name}": value for name, value in train.items()}}

    def stacks(state):
      model = merge(state).model
      model.eval()
      return {name: info.stack for name, info in representation_stacks(model).items()}

    def reset_metrics(state):
      ts = merge(state)
      ts.metrics.reset()
      return split(ts)

    self.train = jax.jit(train, donate_argnums=(0,),
                         in_shardings=(replicated, replicated, replicated, batch),
                         out_shardings=(replicated, replicated))
    self.evaluate = jax.jit(evaluate, in_shardings=(replicated, chunked, chunked, chunked),
                            out_shardings=replicated)
    self.stacks = jax.jit(stacks, in_shardings=(replicated,), out_shardings=replicated)
    self.reset_metrics = jax.jit(reset_metrics, donate_argnums=(0,),
                                 in_shardings=(replicated,), out_shardings=replicated)

  def train_state(self, state) -> TrainState:
    """The :class:`TrainState` of ``state`` on the host (model in train mode)."""
    return nnx.merge(self.graphdef, self._host_rngs, jax.device_get(state))

  @staticmethod
  def checkpoint(state) -> dict:
    """What a checkpoint holds: ``state`` as a nested dict of arrays (``nnx.to_pure_dict``)."""
    return nnx.to_pure_dict(state)

  def abstract_checkpoint(self) -> dict:
    """Shapes, dtypes and shardings of :meth:`checkpoint` (the target of a restore)."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.replicated),
        self.checkpoint(self.initial_state))

  def from_checkpoint(self, arrays: dict):
    """The state holding a checkpoint's arrays (the inverse of :meth:`checkpoint`)."""
    state = jax.tree.map(lambda x: x, self.initial_state)
    nnx.replace_by_pure_dict(state, arrays)
    return state


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
