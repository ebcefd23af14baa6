"""Which subgroup of the kernel grid's isometries are the data invariant to? A learned choice.

:class:`SubgroupSelector` wraps any image classifier ``f`` (the *backbone*, e.g. the plain MNIST
CNN) and learns a distribution ``q`` over the candidate subgroups ``H`` of ``D4`` (by default
all ten, ``ops.D4_SUBGROUPS``). **What the model is told, in one sentence: its answer is one of
the ten subgroups of the square grid's eight isometries, each scored by how much its network's
training loss rises on images transformed by the subgroup's elements, against a prior of
β·log|H| per subgroup in favour of larger ones.**

Weight sharing. Applying ``f`` to an isometry ``g·x`` of the image equals applying, to ``x``,
the network whose every kernel is transformed by ``g⁻¹`` (exact for square images, odd
kernels and 'VALID' convolutions, as in the MNIST CNN). So the 8 backbone passes below are one
network whose kernels are shared across the 8 elements of ``D4`` (a lifting layer with the exact
``D4`` stack, each later layer applied per element), and the readout of a subgroup ``H``,

    y_H(x) = (1/|H|) Σ_{h∈H} f(h·x)                           logits [B, K],

is the group-averaged network: exactly invariant to ``H`` (``y_H(h·x) = y_H(x)``), and, for a
generic ``f``, to nothing else. Every candidate uses the same backbone, so no answer has more
capacity than another: what separates them is only what the invariance costs.

Learning. The backbone trains as an ordinary classifier on its own, untransformed readout
``y_trivial``. For a batch, ``CE_g`` is the mean cross-entropy of ``f(g·x)`` for each element
``g`` (``[8]``), and the objective (:meth:`objective`) is

    L = CE_e  +  Σ_H q_H·sg(s_H − Σ_H' q_H' s_H'),   s_H = mean_{h∈H} log CE_h − β·log|H|,

``sg`` = stop-gradient, ``q = softmax(α)``. The second term has value 0 and gradient
``∂/∂α_H = q_H (s_H − s̄)`` (``s̄`` the ``q``-mean), so ``q`` moves to the subgroup of the
smallest score: the largest group whose elements' losses exceed the untransformed one by less
than a factor ``2^β`` per doubling of the group, on the geometric mean. A data symmetry ``h``
leaves ``CE_h = CE_e`` in expectation (``h·x`` is just another sample); a transformation the
data lack raises it. Scores are log-loss *ratios*, as in
:func:`ds_symmetry.analysis.invariance.invariance_ratios`, independent of how far training has
got. Each element is scored on its own, not through the averaged readout ``y_H``: averaging
logits over views is an ensemble whose loss can *fall* when a view is partly wrong (cross-entropy
is convex in the logits), which would let a superset of the data's group win. The selection is
switched on after ``warmup_steps`` training batches (an untrained network is "invariant" to
everything); from then on the gradient is first order in the scores, so what tells the answers
apart enters at once. During the warm-up the 7 transformed copies are not computed.

Committed: ``1 − max_H q_H ≤ within`` (:meth:`committed_subgroup`). ``discovery.discover_gcnn``
then builds the exact G-CNN of that subgroup.

Shapes: input ``[B, H, W, C]`` (square images); ``subgroup_logits`` → ``[S, B, K]``;
``__call__`` → ``[B, K]``, the readout of the currently most probable subgroup.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ds_symmetry.ops import groups as groups_ops


class SubgroupLogits(nnx.Param):
  """The free logits ``α [S]`` of the distribution over candidate subgroups; they get the
  logits' learning rate (:func:`ds_symmetry.nn.parameter_groups`)."""


class SelectionStep(nnx.Variable):
  """How many training batches :meth:`SubgroupSelector.objective` has seen (int32 scalar)."""


def membership_matrix(candidates: Sequence[str]) -> np.ndarray:
  """float32 ``[S, 8]``: row ``s`` is ``1/|H_s|`` on the ``D4`` elements of candidate ``s``."""
  rows = np.zeros((len(candidates), 8), np.float32)
  for index, name in enumerate(candidates):
    elements = groups_ops.d4_elements(name)
    rows[index, list(elements)] = 1.0 / len(elements)
  return rows


def transformed_copies(images: jnp.ndarray, elements: Sequence[int] = tuple(range(8))
                      ) -> jnp.ndarray:
  """``[B, H, W, C]`` → ``[len(elements), B, H, W, C]``: copy ``i`` is ``D4`` element
  ``elements[i]`` applied to every image (``ops.apply_element("D4", g, ·, axes=(1, 2))``)."""
  if images.ndim != 4 or images.shape[1] != images.shape[2]:
    raise ValueError(f"images: shape {images.shape} is not accepted; expected square images "
                     "[B, H, W, C] with H == W")
  return jnp.stack([groups_ops.apply_element("D4", g, images, axes=(1, 2)) for g in elements])


def element_logits(backbone: nnx.Module, x: jnp.ndarray,
                   elements: Sequence[int] = tuple(range(8))) -> jnp.ndarray:
  """``backbone(g·x)`` for each ``g`` in ``elements`` (one batched call):
  ``x [B, H, W, C]`` → ``[len(elements), B, K]`` float32."""
  batch = x.shape[0]
  copies = transformed_copies(x, elements).reshape((len(elements) * batch,) + x.shape[1:])
  return backbone(copies).astype(jnp.float32).reshape((len(elements), batch, -1))


class SubgroupSelector(nnx.Module):
  """A backbone classifier whose invariance group is learned among subgroups of ``D4``.

  Args:
    backbone: an NNX module mapping ``[B, H, W, C]`` → logits ``[B, K]``.
    candidates: names of subgroups of ``D4`` (``ops.D4_SUBGROUPS``, the default: all ten).
    size_prior: ``β ≥ 0`` in the score ``mean_{h∈H} log CE_h − β·log|H|``.
    warmup_steps: training batches before ``q`` starts to learn.
  """

  def __init__(self, backbone: nnx.Module, *, candidates: Optional[Sequence[str]] = None,
               size_prior: float = 0.02, warmup_steps: int = 100):
    candidates = tuple(groups_ops.D4_SUBGROUPS if candidates is None else candidates)
    if not candidates or len(set(candidates)) != len(candidates):
      raise ValueError(f"candidates: {candidates!r} is not accepted; expected distinct names "
                       f"from {groups_ops.D4_SUBGROUPS}")
    for name in candidates:
      groups_ops.d4_elements(name)  # raises for a name that is not a subgroup of D4
    if not (isinstance(size_prior, (int, float)) and math.isfinite(size_prior)
            and size_prior >= 0):
      raise ValueError(f"size_prior: {size_prior!r} is not accepted; expected a finite number "
                       ">= 0")
    if "trivial" not in candidates:
      raise ValueError(f"candidates: {candidates!r} is not accepted; the trivial group is the "
                       "backbone's own readout and must be a candidate")
    if int(warmup_steps) != warmup_steps or warmup_steps < 0:
      raise ValueError(f"warmup_steps: {warmup_steps!r} is not accepted; expected an integer "
                       ">= 0")
    self.backbone = backbone
    self.warmup_steps = int(warmup_steps)
    self.trivial_index = candidates.index("trivial")
    self.selection_step = SelectionStep(jnp.zeros((), jnp.int32))
    self.candidates = candidates
    self.size_prior = float(size_prior)
    self.membership = nnx.Variable(jnp.asarray(membership_matrix(candidates)))
    self.log_orders = nnx.Variable(jnp.asarray(
        [math.log(groups_ops.group_order(n)) for n in candidates], jnp.float32))
    self.logits = SubgroupLogits(jnp.zeros((len(candidates),), jnp.float32))

  def probabilities(self) -> jnp.ndarray:
    """``q = softmax(α)``, float32 ``[S]``."""
    return jax.nn.softmax(self.logits[...])

  def subgroup_logits(self, x: jnp.ndarray) -> jnp.ndarray:
    """Every candidate's invariant readout ``y_H``: ``[B, H, W, C]`` → ``[S, B, K]``."""
    return jnp.einsum("sg,gbk->sbk", self.membership[...], element_logits(self.backbone, x))

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """The readout of the most probable subgroup, ``[B, K]``."""
    chosen = jnp.argmax(self.logits[...])
    return jnp.take(self.subgroup_logits(x), chosen, axis=0)

  def objective(self, x: jnp.ndarray, labels: jnp.ndarray):
    """``(loss, logits [B, K], terms)`` for one training batch (see the module docstring).

    Counts the call (``selection_step``): ``α`` gets no gradient for the first
    ``warmup_steps`` calls. ``terms``: ``selection_entropy`` (of ``q``, nats),
    ``selected_cross_entropy`` (the most probable subgroup's readout ``y_H``) and
    ``trivial_cross_entropy`` (the backbone's own, the loss it is trained on).
    """
    gate = self.selection_step[...] >= self.warmup_steps
    own_logits = self.backbone(x).astype(jnp.float32)
    # The 7 transformed copies are needed only once the selection learns: during the warm-up
    # the conditional skips their forward pass (XLA runs the taken branch only).
    rest = jax.lax.stop_gradient(nnx.cond(
        gate, lambda backbone, x: element_logits(backbone, x, range(1, 8)),
        lambda backbone, x: jnp.zeros(
            (7,) + own_logits.shape, jnp.float32), self.backbone, x))
    outputs = jnp.concatenate([own_logits[None], rest])                  # [8, B, K]
    element_losses = jax.vmap(
        lambda logits: optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    )(outputs)                                                          # [8]: CE of f(g·x)
    own = element_losses[0]
    q = self.probabilities()
    scores = jax.lax.stop_gradient(
        self.membership[...] @ jnp.log(element_losses + 1e-12)
        - self.size_prior * self.log_orders[...])                       # [S]
    selection = gate.astype(jnp.float32) * jnp.sum(
        q * (scores - jnp.sum(jax.lax.stop_gradient(q) * scores)))
    self.selection_step[...] = self.selection_step[...] + 1
    chosen = jnp.argmax(q)
    selected = jnp.einsum("g,gbk->bk", self.membership[...][chosen], outputs)  # y_H, [B, K]
    terms = {"selection_entropy": -jnp.sum(q * jnp.log(q + 1e-30)),
             "selected_cross_entropy": optax.softmax_cross_entropy_with_integer_labels(
                 selected, labels).mean(),
             "trivial_cross_entropy": own}
    return own + selection, selected, terms

  def committed_subgroup(self, within: float) -> Optional[str]:
    """The most probable candidate when ``1 − max q ≤ within``, else ``None``."""
    if not within > 0:
      raise ValueError(f"within: {within!r} is not accepted; expected a positive number")
    q = np.asarray(self.probabilities())
    best = int(np.argmax(q))
    return self.candidates[best] if 1.0 - float(q[best]) <= within else None
