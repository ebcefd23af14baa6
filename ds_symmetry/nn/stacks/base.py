"""The stack interface every parameterisation implements, and what learned ones share.

A parameterisation is a small, frozen description (hashable: it is static data of the layer
that holds it). It owns no arrays: :meth:`StackParameterisation.create` returns the variables
it needs (attribute name → value) and the layer keeps them as its own attributes, so a
parameter's path in ``nnx.state`` is ``<layer>/<name>`` (e.g. ``convs/0/logits``) whichever
parameterisation made it. Every other method reads them back from a mapping with those names.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from ds_symmetry.ops import stacks as stack_ops
from ds_symmetry.ops import structure as structure_ops
from ds_symmetry.ops.regularisers import entropy, norm_loss
from ds_symmetry.ops.sinkhorn import marginal_error, sinkhorn

# How a learned matrix is made from its free parameters (the reviewers' ablation): doubly
# stochastic (the paper), row-stochastic (softmax over each row), unconstrained, or (spatial
# matrices only) a convex blend of the kernel grid's isometries.
CONSTRAINTS = ("sinkhorn", "softmax", "none", "isometries")
# The kernel grid's isometries an isometry blend mixes (rotations by 90°·r and reflections).
NUM_ISOMETRIES = 8

Variables = Mapping[str, Any]


class RepresentationLogits(nnx.Param):
  """Free logits of a learned representation stack. The trainer gives them their own
  learning rate (the reference's ``learning_rate_reps``) by filtering on this type."""


class FixedStack(nnx.Variable):
  """A frozen ``[G, d, d]`` stack that replaced a learned one (``analysis.discover``): not a
  parameter, so no optimizer updates it; saved and restored with the model."""


@dataclasses.dataclass(frozen=True)
class LearnedMatrices:
  """How a parameterisation's learned matrices are made from free parameters.

  Attributes:
    constraint: one of :data:`CONSTRAINTS`. ``"sinkhorn"``: doubly stochastic (the paper);
      ``"softmax"``: row-stochastic; ``"none"``: the matrix is the parameter itself
      (initialised to the Sinkhorn output of the initial logits); ``"isometries"``: spatial
      matrices (``k²×k²``) are blends of the grid's 8 isometries with free weights ``[8]``,
      others use Sinkhorn.
    kernel_size: ``k``, the grid whose isometries a blend mixes.
    fix_identity: whether element 0 of a stack is the fixed identity (not learned).
    logits_init: how logits start (``ops.stacks.LOGITS_INITS``); blend weights start from
      N(0, 1), or zeros for ``"zeros"``.
    identity_scale: the diagonal's offset for ``logits_init="identity"``.
    sinkhorn_iters: Sinkhorn iterations.
    sinkhorn_tau: temperature of Sinkhorn and of every softmax.
    sinkhorn_tol: Sinkhorn's early-exit tolerance, or ``None``.
    remat_sinkhorn: recompute Sinkhorn's iterates in the backward pass.
  """

  constraint: str = "sinkhorn"
  kernel_size: int = 3
  fix_identity: bool = True
  logits_init: str = "uniform"
  identity_scale: float = 5.0
  sinkhorn_iters: int = 20
  sinkhorn_tau: float = 1.0
  sinkhorn_tol: Optional[float] = None
  remat_sinkhorn: bool = False

  def create(self, key: jax.Array, count: int, size: int, spatial: bool = False,
             num_blend_weights: int = NUM_ISOMETRIES) -> Optional[RepresentationLogits]:
    """Free parameters of ``count`` learned ``[size, size]`` matrices: logits
    ``[count, size, size]``, or blend weights ``[count, num_blend_weights]`` for spatial
    matrices (they act on the k×k grid) under ``constraint="isometries"``; ``None`` when
    ``count`` is 0."""
    if count == 0:
      return None
    if spatial and self.constraint == "isometries":
      shape = (count, num_blend_weights)
      return RepresentationLogits(jnp.zeros(shape, jnp.float32) if self.logits_init == "zeros"
                                  else jax.random.normal(key, shape, jnp.float32))
    logits = stack_ops.init_logits(key, (count, size, size), self.logits_init,
                                   self.identity_scale)
    if self.constraint == "none":  # the matrices themselves, starting where Sinkhorn would
      logits = self.sinkhorn(logits)
    return RepresentationLogits(logits)

  def sinkhorn(self, logits: jnp.ndarray) -> jnp.ndarray:
    """Doubly stochastic ``[n, s, s]`` from logits ``[n, s, s]`` with these settings."""
    # remat_sinkhorn: the backward pass recomputes each iteration from saved row/column
    # potentials instead of keeping num_iters full [n, d, d] iterates alive.
    return sinkhorn(logits, num_iters=self.sinkhorn_iters, tau=self.sinkhorn_tau,
                    tol=self.sinkhorn_tol, memory_efficient=self.remat_sinkhorn)

  def constrain(self, free: jnp.ndarray) -> jnp.ndarray:
    """Learned matrices ``[n, s, s]`` from free parameters: logits ``[n, s, s]`` or isometry
    blend weights ``[n, 8]`` (then ``s = k²``)."""
    free = free.astype(jnp.float32)
    if free.ndim == 2:  # blend weights over the grid's isometries
      return stack_ops.isometry_blend(free, self.kernel_size, self.sinkhorn_tau)
    if self.constraint in ("sinkhorn", "isometries"):
      return self.sinkhorn(free)
    if self.constraint == "softmax":
      return stack_ops.row_softmax(free, self.sinkhorn_tau)
    return free

  def with_identity(self, learned: Optional[jnp.ndarray], size: int) -> jnp.ndarray:
    """``[I, *learned]`` (``[G, size, size]``) with ``fix_identity``, else ``learned``."""
    return stack_ops.with_identity(learned, size, self.fix_identity)

  def has_norm(self, free: jnp.ndarray) -> bool:
    """Whether the reference norm loss applies to ``free``: Sinkhorn logits ``[n, s, s]``."""
    return self.constraint in ("sinkhorn", "isometries") and free.ndim == 3

  def learned_count(self, num_elements: int) -> int:
    """Learned elements of a stack of ``num_elements`` (the fixed identity is not learned)."""
    return num_elements - 1 if self.fix_identity else num_elements


class StackParameterisation:
  """One way of producing a layer's representation stack ``[G, d, d]``.

  A subclass is a frozen dataclass (static, hashable) that sets the class attributes below
  and implements :meth:`create` and :meth:`stack`; learned ones list the matrices they own
  (:meth:`owned_matrices`) and, if any, the spatial stack the isometry prior applies to
  (:meth:`spatial_matrices`), and inherit :meth:`regularizers` and :meth:`marginal_error`.

  Attributes:
    num_elements: ``G``.
    size: ``d``, the side of each element's matrix.
    learned: whether the stack has learned parameters (``False``: exact or frozen).
    factorised: whether :meth:`factors` gives Kronecker factors ``A_g ⊗ B_g`` of the stack.
    powers_of_one_generator: whether element ``m`` is (a blend of) ``g^m`` for one generator.
    variable_names: the layer attributes :meth:`create` fills and the other methods read.
  """

  num_elements: int
  size: int
  learned: ClassVar[bool] = True
  factorised: ClassVar[bool] = False
  powers_of_one_generator: ClassVar[bool] = False
  variable_names: ClassVar[tuple[str, ...]] = ()

  def create(self, key: jax.Array, **sources) -> dict[str, Any]:
    """The variables (name → ``nnx.Variable``, module or ``None``) for a new layer; ``key``
    draws the initial values, ``sources`` are objects shared with other layers."""
    raise NotImplementedError

  def stack(self, variables: Variables) -> jnp.ndarray:
    """The stack ``[G, d, d]`` from the layer's ``variables`` (:attr:`variable_names`)."""
    raise NotImplementedError

  def factors(self, variables: Variables) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(A [G, G, G], B [G, s, s])`` with ``stack = A_g ⊗ B_g`` (``factorised`` only)."""
    raise ValueError(f"{type(self).__name__} has no Kronecker factors")

  def owned_matrices(self, variables: Variables) -> list[tuple[Any, jnp.ndarray]]:
    """``(free parameters, learned matrices [n, s, s])`` of the matrices this layer owns and
    regularises (shared ones are counted by their owner)."""
    del variables
    return []

  def spatial_matrices(self, variables: Variables) -> Optional[jnp.ndarray]:
    """The layer's own spatial stack ``[n, k², k²]`` on a 2-D grid (the isometry prior's
    argument), or ``None``."""
    del variables
    return None

  def regularizers(self, variables: Variables) -> dict[str, jnp.ndarray]:
    """``norm`` (reference norm loss of Sinkhorn logits), ``entropy`` (of each owned stack,
    with the fixed identity) and ``isometry`` (``ops.structure.isometry_loss`` of
    :meth:`spatial_matrices`): float32 scalars, zeros without learned parameters."""
    zero = jnp.zeros((), jnp.float32)
    terms = {"norm": zero, "entropy": zero, "isometry": zero}
    if not self.learned:
      return terms
    matrices_of = self.matrices  # pylint: disable=no-member  (learned ones define it)
    for free, matrices in self.owned_matrices(variables):
      if matrices_of.has_norm(free[...]):
        terms["norm"] = terms["norm"] + norm_loss(free[...])
      terms["entropy"] = terms["entropy"] + entropy(
          matrices_of.with_identity(jnp.maximum(matrices, 0.0), matrices.shape[-1]))
    spatial = self.spatial_matrices(variables)
    if spatial is not None:
      terms["isometry"] = structure_ops.isometry_loss(spatial)
    return terms

  def marginal_error(self, variables: Variables) -> jnp.ndarray:
    """Largest |row sum − 1| / |column sum − 1| over the owned matrices (a float32 scalar;
    zero without learned parameters)."""
    errors = [jnp.max(marginal_error(matrices))
              for _, matrices in self.owned_matrices(variables)]
    return jnp.max(jnp.stack(errors)) if errors and self.learned else jnp.zeros(
        (), jnp.float32)
