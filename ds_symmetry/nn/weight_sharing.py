"""Weight-sharing convolutions (Flax NNX): learned doubly stochastic or exact, frozen stacks.

Both layers own canonical kernels ``θ`` and a representation stack ``R`` and compute
``Conv2D[x, R·θ]`` through ``ops.lift_conv`` / ``ops.group_conv``. The stack is either

* learned (``group=None``): ``R = [I, sinkhorn(Θ_1), …, sinkhorn(Θ_{G-1})]`` with free logits
  ``Θ`` (a :class:`RepresentationLogits`), one stack shared by all channels of the layer; or
* exact and frozen (``group="C4"``, ``"D4"``, …): the permutations from ``ops.groups``. This
  *is* the G-CNN — the same code path with fixed permutations, not a second implementation; or
* frozen after learning (:meth:`freeze_stack`, a :class:`FixedStack`): e.g. the exact stacks of
  the G-CNN a learned network was rounded to (``ds_symmetry.discovery``).

Group layers can structure a learned stack (``sharing``: Kronecker factors, tied to the lifting
layer, factors from its Cayley table; see :class:`WSGroupConv`), and every learned matrix can be
doubly stochastic, row-stochastic, unconstrained or a blend of grid isometries (``constraint``).

Shapes: ``WSLiftConv``: ``[B, H, W, C_in]`` → ``[B, H', W', C_out, G]``;
``WSGroupConv``: ``[B, H, W, C_in, G]`` → ``[B, H', W', C_out, G]``.

Signals and voxel grids: ``spatial_dims=1`` or ``3`` (default 2, or the rank of ``group``'s
grid, e.g. 1 for ``shift<n>``, 3 for ``cube``) makes the kernel a ``(k,)*D`` grid with
``d = k^D`` (lift) or ``G·k^D`` (group) and the input ``[B, *grid, C_in(, G)]``; the stack is
applied by one convolution of rank D (``ops.lift_conv_nd`` / ``ops.group_conv_nd``).

Initialisation follows the reference code (``wsmodules.py``):

* logits uniform in [0, 1) (``logits_init="uniform"``); alternatives ``"balanced_uniform"``
  (the same stacks, with the logits' gauge fixed so the norm regulariser starts at ≈0 instead
  of ≈28–68 per layer; it then no longer dominates the first epoch), ``"normal"``
  (N(0, 1)), ``"kaiming_uniform"`` (torch's ``kaiming_uniform_(a=√5)`` on ``[n, d, d]``:
  U(±1/d)), ``"identity"`` (``identity_scale·I`` plus uniform [0, 1) noise: starts near the
  identity), ``"zeros"`` (every matrix uniform, every isometry blend at the centre of the 8
  isometries: a symmetric start, so the data alone break the tie; independent elements started
  this way stay equal to each other, so use it with ``elements="powers"``). Isometry blends
  (``constraint="isometries"``) start from N(0, 1) weights for every other choice;
* lifting weights ``[C_out, C_in, k²]``: torch ``kaiming_normal_(a=√5)``,
  std = 1/√(3·C_in·k²);
* group weights ``[C_out, C_in, G·k²]``: torch ``kaiming_uniform_(a=√5)``,
  U(±1/√(C_in·G·k²));
* bias ``[C_out]`` zeros, shared along the group axis.

The fixed identity (``fix_identity=True``, the reference's default) is the first element, is
not learned and does not pass through Sinkhorn (the reference adds 1e-16 to it; irrelevant in
float32 outside ``entropy``, which clamps at 1e-16 anyway).
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from ds_symmetry.ops import groups as groups_ops
from ds_symmetry.ops import kernels as kernel_ops
from ds_symmetry.ops import structure as structure_ops
from ds_symmetry.ops.regularisers import entropy, norm_loss
from ds_symmetry.ops.sinkhorn import marginal_error, sinkhorn

LOGITS_INITS = ("uniform", "balanced_uniform", "normal", "kaiming_uniform", "identity", "zeros")
# How a learned matrix is made from its free parameters (the reviewers' ablation):
# doubly stochastic (the paper), row-stochastic (softmax over each row), unconstrained, or
# (spatial stacks only) a convex blend of the kernel grid's isometries.
CONSTRAINTS = ("sinkhorn", "softmax", "none", "isometries")
# How a group convolution's stack is structured (``WSGroupConv``): see its docstring.
SHARINGS = ("full", "kronecker", "tied", "tied_shared", "tied_cayley", "tied_cyclic")
# How a lifting stack's elements relate (``WSLiftConv``): each learned on its own, or every
# element a power of one learned generator, or (isometry blends only) the blend of the powers
# of the grid's isometries with one learned set of weights.
ELEMENTS = ("independent", "powers", "power_blend")
WEIGHT_INITS = ("reference", "se2cnn")
KERNEL_MASKS = ("none", "disk")


class RepresentationLogits(nnx.Param):
  """Free logits of a learned representation stack. The trainer gives them their own
  learning rate (the reference's ``learning_rate_reps``) by filtering on this type."""


class FixedStack(nnx.Variable):
  """A frozen ``[G, d, d]`` stack that replaced a learned one (``analysis.discover``): not a
  parameter, so no optimizer updates it; saved and restored with the model."""


def _init_logits(key, shape, mode: str, identity_scale: float):
  n, d, _ = shape
  if mode == "uniform":
    return jax.random.uniform(key, shape, jnp.float32)
  if mode == "balanced_uniform":
    # Same Sinkhorn output as "uniform" (Sinkhorn ignores row/column constants), but the
    # logits start with log row/column sums ≈ 0, where the norm regulariser is ≈ 0.
    return jnp.log(sinkhorn(jax.random.uniform(key, shape, jnp.float32), num_iters=50))
  if mode == "normal":
    return jax.random.normal(key, shape, jnp.float32)
  if mode == "kaiming_uniform":
    bound = 1.0 / d  # gain √(1/3) · √(3 / fan_in), fan_in = d·d
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)
  if mode == "identity":
    noise = jax.random.uniform(key, shape, jnp.float32)
    return noise + identity_scale * jnp.eye(d, dtype=jnp.float32)[None]
  if mode == "zeros":
    return jnp.zeros(shape, jnp.float32)
  raise ValueError(f"logits_init must be one of {LOGITS_INITS}; got {mode!r}")


class _WeightSharingConv(nnx.Module):
  """Shared machinery of :class:`WSLiftConv` and :class:`WSGroupConv`.

  Options common to both layers (besides the stack's source, see the module docstring):

  * ``constraint``: how a learned matrix is made from its logits: ``"sinkhorn"`` (doubly
    stochastic, the paper), ``"softmax"`` (row-stochastic: each row a softmax, as in Yeh et
    al. 2022), ``"none"`` (the matrix is the parameter itself, initialised to the Sinkhorn
    output of the initial logits so all three start from the same stack) or ``"isometries"``:
    a spatial matrix (``k²×k²``: the lifting stack, Kronecker spatial factors) is a convex
    blend ``Σ_j softmax(w)_j P_j`` of the 8 isometries ``P_j`` of the square kernel grid
    (rotations by multiples of 90° and reflections), with free ``w [8]`` drawn from N(0, 1);
    other matrices use Sinkhorn. This is the hard limit of the ``isometry`` regulariser
    (``ops.structure.isometry_loss``): it says the symmetry moves kernels *geometrically*, and
    leaves to the data which isometries (and whether they form C4, a reflection group, …).
  * ``kernel_mask``: ``"disk"`` zeroes the canonical kernels' pixels farther than k/2 from the
    centre (as the reference's G-CNN does; for odd k and C4 the rotation then permutes the
    disk exactly); ``"none"`` (default) keeps every pixel.
  * ``weight_init``: ``"reference"`` (the reference weight-sharing layers' torch inits, below)
    or ``"se2cnn"`` (the reference G-CNN's ``N(0, (2/√fan_in)²)``, fan_in = ``C_in·d``).
  """

  kind: str = ""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *,
               num_elements: Optional[int] = None, group: Optional[str] = None,
               spatial_dims: Optional[int] = None,
               fix_identity: bool = True,
               logits_init: str = "uniform", identity_scale: float = 5.0,
               sinkhorn_iters: int = 20, sinkhorn_tau: float = 1.0,
               sinkhorn_tol: Optional[float] = None, remat_sinkhorn: bool = False,
               constraint: str = "sinkhorn", kernel_mask: str = "none",
               weight_init: str = "reference",
               padding="VALID", use_bias: bool = True, compute_dtype=None,
               rngs: nnx.Rngs, **stack_options):
    for name, value in (("in_features", in_features), ("out_features", out_features),
                        ("kernel_size", kernel_size), ("sinkhorn_iters", sinkhorn_iters)):
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    if group is not None:
      group_dims = groups_ops.group_spatial_dims(group)  # validates the name
      if spatial_dims not in (None, group_dims):
        raise ValueError(f"spatial_dims={spatial_dims!r} does not match group {group!r}, which "
                         f"acts on {group_dims}-D grids; pass spatial_dims={group_dims} or None")
      spatial_dims = group_dims
      expected = groups_ops.group_order(group)
      if num_elements not in (None, expected):
        raise ValueError(f"num_elements={num_elements!r} does not match group {group!r} of "
                         f"order {expected}; pass num_elements={expected} or None")
      num_elements = expected
    elif num_elements is None:
      num_elements = 4  # the paper's |H| in every experiment
    if not isinstance(num_elements, int) or num_elements < 1:
      raise ValueError(f"num_elements must be a positive int; got {num_elements!r}")
    for name, value, allowed in (("logits_init", logits_init, LOGITS_INITS),
                                 ("constraint", constraint, CONSTRAINTS),
                                 ("kernel_mask", kernel_mask, KERNEL_MASKS),
                                 ("weight_init", weight_init, WEIGHT_INITS)):
      if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    self.spatial_dims = kernel_ops.check_spatial_dims(2 if spatial_dims is None else spatial_dims)
    kernel_ops._check_padding_nd(padding, self.spatial_dims)  # pylint: disable=protected-access
    if self.spatial_dims != 2:
      for name, value, plain in (("kernel_mask", kernel_mask, "none"),
                                 ("constraint", constraint, "sinkhorn")):
        if value != plain and not (name == "constraint" and value in ("softmax", "none")):
          raise ValueError(f"{name}={value!r} needs a 2-D kernel grid; got "
                           f"spatial_dims={self.spatial_dims}")

    self.in_features, self.out_features = in_features, out_features
    self.kernel_size, self.num_elements, self.group = kernel_size, num_elements, group
    self.fix_identity = bool(fix_identity)
    self.sinkhorn_iters, self.sinkhorn_tau, self.sinkhorn_tol = (
        sinkhorn_iters, float(sinkhorn_tau), sinkhorn_tol)
    self.remat_sinkhorn, self.padding, self.compute_dtype = remat_sinkhorn, padding, compute_dtype
    self.constraint, self.kernel_mask, self.weight_init = constraint, kernel_mask, weight_init
    self.logits_init, self.identity_scale = logits_init, identity_scale
    self.fixed_stack: Optional[FixedStack] = nnx.data(None)

    if group is not None:
      self._exact_stack()  # raises ValueError now if the group does not act on this grid
    weight_key, logits_key = rngs.params(), rngs.params()
    self.weight = nnx.Param(self._init_weight(weight_key))
    self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
    self._init_stack(logits_key, **stack_options)

  # Subclasses define ``representation_size`` (d), ``_weight_shape``, ``_reference_init``,
  # ``_init_stack`` (the learned parameters), ``_exact_stack``, ``_learned_stack``,
  # ``_own_logits``, ``_own_spatial_stack``, ``_drop_learned`` and the ops they apply:
  # ``_build_kernels`` / ``_convolve`` (2-D), ``_build_kernels_nd`` / ``_convolve_nd`` (1-D, 3-D).

  @property
  def num_learned(self) -> int:
    """Learned elements per stack (the fixed identity is not learned)."""
    return self.num_elements - 1 if self.fix_identity else self.num_elements

  def _new_logits(self, size: int, key, spatial: bool = False
                  ) -> Optional[RepresentationLogits]:
    """Free parameters of ``num_learned`` learned ``[size, size]`` matrices (``spatial``: the
    matrices act on the k×k kernel grid)."""
    if self.num_learned == 0:
      return None
    if spatial and self.constraint == "isometries":  # blend weights over the isometries
      shape = (self.num_learned, self._num_blend_weights)
      return RepresentationLogits(jnp.zeros(shape, jnp.float32) if self.logits_init == "zeros"
                                  else jax.random.normal(key, shape, jnp.float32))
    logits = _init_logits(key, (self.num_learned, size, size), self.logits_init,
                          self.identity_scale)
    if self.constraint == "none":  # the matrices themselves, starting where Sinkhorn would
      logits = self._sinkhorn(logits)
    return RepresentationLogits(logits)

  @property
  def _num_blend_weights(self) -> int:
    """Weights per isometry blend (``constraint="isometries"``): the grid's 8 isometries."""
    return 8

  def _init_weight(self, key):
    shape = self._weight_shape()
    fan_in = self.in_features * shape[-1]
    if self.weight_init == "se2cnn":  # reference G-CNN: N(0, (2/√fan_in)²)
      return (2.0 / math.sqrt(fan_in)) * jax.random.normal(key, shape, jnp.float32)
    return self._reference_init(key, shape, fan_in)

  def canonical_weight(self) -> jnp.ndarray:
    """The canonical kernels with ``kernel_mask`` applied: ``[C_out, C_in, d]``."""
    weight = self.weight[...]
    if self.kernel_mask == "disk":
      mask = structure_ops.disk_mask(self.kernel_size)
      weight = weight * jnp.tile(mask, weight.shape[-1] // mask.shape[0]).astype(weight.dtype)
    return weight

  def expanded_kernel(self) -> jnp.ndarray:
    """The HWIO kernel holding every transformed copy (output channel ``o·G + g``)."""
    if self.spatial_dims != 2:
      return self._build_kernels_nd(self.representation_stack(), self.weight[...],
                                    self.spatial_dims)
    return self._build_kernels(self.representation_stack(), self.canonical_weight())

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    bias = None if self.bias is None else self.bias[...]
    if self.spatial_dims != 2:
      return self._convolve_nd(x, self.representation_stack(), self.weight[...], bias,
                               self.padding, self.compute_dtype, spatial_dims=self.spatial_dims)
    return self._convolve(x, self.representation_stack(), self.canonical_weight(), bias,
                          self.padding, self.compute_dtype)

  @property
  def is_learned(self) -> bool:
    """Whether the stack has learned parameters (not an exact group, not frozen)."""
    return self.group is None and self.fixed_stack is None

  @property
  def is_fixed(self) -> bool:
    """Whether a learned stack was replaced by a frozen one (:meth:`freeze_stack`)."""
    return self.fixed_stack is not None

  def freeze_stack(self, stack) -> None:
    """Replaces the learned stack by the frozen ``stack [G, d, d]`` (e.g. exact permutations
    found by ``analysis.discover``); the learned parameters are dropped."""
    stack = jnp.asarray(stack, jnp.float32)
    d = self.representation_size
    if stack.shape != (self.num_elements, d, d):
      raise ValueError(f"stack must have shape {(self.num_elements, d, d)} for this layer; got "
                       f"{tuple(stack.shape)}")
    if self.group is not None:
      raise ValueError(f"this layer's stack is the exact group {self.group!r}; only learned "
                       f"stacks can be frozen")
    self._drop_learned()
    self.fixed_stack = FixedStack(stack)

  # -- the stack --------------------------------------------------------------------------
  def _sinkhorn(self, logits):
    # remat_sinkhorn: the backward pass recomputes each iteration from saved row/column
    # potentials instead of keeping num_iters full [n, d, d] iterates alive.
    return sinkhorn(logits, num_iters=self.sinkhorn_iters, tau=self.sinkhorn_tau,
                    tol=self.sinkhorn_tol, memory_efficient=self.remat_sinkhorn)

  def _constrain(self, logits) -> jnp.ndarray:
    """Learned matrices ``[n, s, s]`` from their free parameters, by ``constraint``."""
    logits = logits.astype(jnp.float32)
    if logits.ndim == 2:  # blend weights over the grid's isometries
      weights = jax.nn.softmax(logits / self.sinkhorn_tau, axis=-1)
      return jnp.einsum("nj,jab->nab", weights,
                        groups_ops.spatial_permutations("D4", self.kernel_size))
    if self.constraint in ("sinkhorn", "isometries"):
      return self._sinkhorn(logits)
    if self.constraint == "softmax":
      return jax.nn.softmax(logits / self.sinkhorn_tau, axis=-1)
    return logits

  def _with_identity(self, learned: Optional[jnp.ndarray], size: int) -> jnp.ndarray:
    parts = [jnp.eye(size, dtype=jnp.float32)[None]] if self.fix_identity else []
    if learned is not None:
      parts.append(learned)
    return jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]

  def representation_stack(self) -> jnp.ndarray:
    """The layer's ``[G, d, d]`` stack: learned (doubly stochastic by default), exact
    permutations, or frozen."""
    if self.group is not None:
      return self._exact_stack()
    if self.fixed_stack is not None:
      return self.fixed_stack[...]
    return self._learned_stack()

  def _regularized_stacks(self):
    """``(logits, matrices)`` pairs of the stacks this layer owns (shared ones are counted
    by their owner)."""
    return [(logits, self._constrain(logits[...])) for logits in self._own_logits()]

  def regularizers(self) -> dict[str, jnp.ndarray]:
    """``norm`` (reference norm loss on the raw logits; Sinkhorn only), ``entropy`` (of the
    stacks the layer owns, with the fixed identity, as the reference) and ``isometry``
    (:func:`ops.structure.isometry_loss` of the layer's own spatial stack, if any); zeros for
    exact or frozen stacks."""
    zero = jnp.zeros((), jnp.float32)
    terms = {"norm": zero, "entropy": zero, "isometry": zero}
    if not self.is_learned:
      return terms
    for logits, matrices in self._regularized_stacks():
      if self.constraint in ("sinkhorn", "isometries") and logits[...].ndim == 3:
        terms["norm"] = terms["norm"] + norm_loss(logits[...])
      terms["entropy"] = terms["entropy"] + entropy(
          self._with_identity(jnp.maximum(matrices, 0.0), matrices.shape[-1]))
    spatial = self._own_spatial_stack() if self.spatial_dims == 2 else None
    if spatial is not None:  # the geometric prior is defined on 2-D kernel grids
      terms["isometry"] = structure_ops.isometry_loss(spatial)
    return terms

  def marginal_error(self) -> jnp.ndarray:
    """Largest |row sum − 1| / |column sum − 1| over the learned matrices the layer owns."""
    errors = [jnp.max(marginal_error(matrices)) for _, matrices in self._regularized_stacks()]
    return jnp.max(jnp.stack(errors)) if errors and self.is_learned else jnp.zeros(
        (), jnp.float32)


class WSLiftConv(_WeightSharingConv):
  """Lifting layer: ``[B, H, W, C_in]`` → ``[B, H', W', C_out, G]`` (``[B, *grid, …]`` for
  ``spatial_dims`` 1 or 3).

  ``R`` acts on the flattened k×k kernel (d = k², or k^D). With ``sharing="tied*"`` group
  layers reuse this layer's learned stack as their spatial factor."""

  kind = "lift"
  _build_kernels = staticmethod(kernel_ops.lift_kernels)  # HWIO [k, k, C_in, C_out·G]
  _convolve = staticmethod(kernel_ops.lift_conv)
  _build_kernels_nd = staticmethod(kernel_ops.lift_kernels_nd)
  _convolve_nd = staticmethod(kernel_ops.lift_conv_nd)

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *,
               elements: str = "independent", **kwargs):
    """``elements``: ``"independent"`` (default, the paper): the ``G − 1`` learned elements
    have their own logits. ``"powers"``: one learned generator ``B`` (constrained as usual) and
    ``R = [I, B, B², …, B^{G−1}]``. Independent elements all receive the same gradient from a
    symmetric start and tend to collapse onto the same transformation (a repeated element is
    never a group); powers of one generator are distinct as soon as ``B`` has order ``G``, so the
    stack is a cyclic group whenever ``B`` is a permutation with ``B^G = I``. The data choose
    ``B`` (a rotation, a flip, the identity, …); needs ``fix_identity=True``.

    ``"power_blend"`` (needs ``constraint="isometries"``): element ``m`` is
    ``Σ_j w_j P_j^m`` over the candidate generators ``P_j``, one per distinct cyclic stack of
    the kernel grid's 8 isometries (``ops.structure.distinct_cyclic_generators``: for
    ``G = 4`` the 90° and 270° rotations generate the same stack and count once, so 7
    candidates), with one learned ``w = softmax(logits)``: the expected stack when the
    generator is drawn from ``w``. It equals
    ``"powers"`` whenever ``w`` is one-hot, but off the vertices it differs: ``"powers"`` blends
    first and multiplies after, so at the centre start ``B = Π`` (the isometries' mean) absorbs
    every isometry (``PΠ = Π``) and ``B², B³`` do not move to first order; the generator is then
    chosen by how useful *one* extra transformed copy is. Here every power moves with ``w``
    from the start, so the gradient of ``w_j`` already weighs the whole cyclic group ``P_j``
    generates (a 90° rotation: four distinct copies; a reflection: two, each repeated)."""
    if elements not in ELEMENTS:
      raise ValueError(f"elements must be one of {ELEMENTS}; got {elements!r}")
    if elements != "independent" and not kwargs.get("fix_identity", True):
      raise ValueError(f"elements={elements!r} needs fix_identity=True (element 0 is the "
                       f"identity); got fix_identity=False")
    if elements == "power_blend" and kwargs.get("constraint", "sinkhorn") != "isometries":
      raise ValueError(f"elements='power_blend' blends powers of the grid's isometries and needs "
                       f"constraint='isometries'; got constraint={kwargs.get('constraint')!r}")
    self.elements = elements
    super().__init__(in_features, out_features, kernel_size, **kwargs)

  @property
  def num_learned(self) -> int:
    if self.elements != "independent" and self.num_elements > 1:
      return 1
    return super().num_learned

  @property
  def generator_candidates(self) -> tuple[int, ...]:
    """``elements="power_blend"``: the isometries (indices into
    ``ops.groups.spatial_permutations("D4", k)``) the generator is blended over, one per
    distinct cyclic stack."""
    return structure_ops.distinct_cyclic_generators(self.kernel_size, self.num_elements)

  @property
  def _num_blend_weights(self) -> int:
    if self.elements == "power_blend":  # one weight per candidate generator
      return len(self.generator_candidates)
    return super()._num_blend_weights

  def _init_stack(self, key):
    self.logits = (self._new_logits(self.representation_size, key, spatial=True)
                   if self.group is None else None)

  @property
  def representation_size(self) -> int:
    return self.kernel_size ** self.spatial_dims

  def _weight_shape(self):
    return (self.out_features, self.in_features, self.representation_size)

  def _reference_init(self, key, shape, fan_in):
    std = 1.0 / math.sqrt(3.0 * fan_in)  # torch kaiming_normal_(a=√5)
    return std * jax.random.normal(key, shape, jnp.float32)

  def _exact_stack(self):
    return groups_ops.spatial_permutations(self.group, self.kernel_size)

  def _own_logits(self):
    return [self.logits] if self.logits is not None else []

  def _learned_stack(self):
    if self.logits is not None and self.elements == "power_blend":
      weights = jax.nn.softmax(self.logits[...][0].astype(jnp.float32) / self.sinkhorn_tau)
      powers = structure_ops.isometry_powers(self.kernel_size, self.num_elements)  # [G, 8, d, d]
      powers = powers[1:, jnp.asarray(self.generator_candidates)]
      learned = jnp.einsum("j,mjab->mab", weights, powers)
      return self._with_identity(learned, self.representation_size)
    learned = None if self.logits is None else self._constrain(self.logits[...])
    if learned is not None and self.elements == "powers":
      generator, powers = learned[0], [learned[0]]
      for _ in range(self.num_elements - 2):
        powers.append(powers[-1] @ generator)
      learned = jnp.stack(powers)
    return self._with_identity(learned, self.representation_size)

  def _own_spatial_stack(self):
    return self._learned_stack() if self.logits is not None else None

  def _regularized_stacks(self):
    if self.logits is not None and self.elements == "power_blend":  # weights over candidates
      return [(self.logits, self._learned_stack()[1:2])]  # the generator's blend Σ_j w_j P_j
    return super()._regularized_stacks()

  def _drop_learned(self):
    self.logits = None


class WSGroupConv(_WeightSharingConv):
  """Group convolution: ``[B, H, W, C_in, G]`` → ``[B, H', W', C_out, G]`` (``[B, *grid, …]``
  for ``spatial_dims`` 1 or 3).

  ``R`` acts jointly on (input element, y, x), d = G·k² (G·k^D); the exact version is the
  shift-twist (regular) representation ``Λ(g) ⊗ L(g)``. How a learned stack is structured
  (``sharing``):

  * ``"full"`` (default, the paper): every element is a free ``[G·k², G·k²]`` matrix.
  * ``"kronecker"``: ``R_g = A_g ⊗ B_g`` with the layer's own ``A [G, G, G]`` (input-element
    axis) and ``B [G, k², k²]`` (kernel plane). The kernel is built from the factors
    (``ops.structure.kronecker_group_kernels``), never from the ``[G, G·k², G·k²]`` stack.
  * ``"tied"``: ``B`` is the lifting layer's learned stack (``spatial_source``), shared by every
    group layer: the network learns one spatial action. The layer learns only ``A``.
  * ``"tied_shared"``: as ``"tied"``, and one ``A`` (``group_logits_source``) is shared by all
    group layers too.
  * ``"tied_cayley"``: as ``"tied"``, and ``A`` is not learned at all but derived from how
    ``B``'s elements compose (``ops.structure.soft_cayley_factors``). With an exact ``B`` the
    layer is exactly a G-CNN layer in ``B``'s labelling of the elements.
  * ``"tied_cyclic"``: as ``"tied"`` for a lifting layer whose elements are powers of one
    generator (``elements="powers"`` or ``"power_blend"``), with ``A_m`` the cyclic shift by
    ``m`` (``A_m[(m + q) mod G, q] = 1``): element ``m`` is ``g^m`` and ``g^m g^q = g^{m+q}``,
    which holds for *any* generator of order dividing ``G`` (a rotation, a flip, the
    identity), so this names no group; the data still choose ``g``. Unlike ``"tied_cayley"``
    it does not read the composition law off a blurred ``B`` (uniform at a symmetric start,
    which makes every element slot look alike to the rest of the network).

  A Kronecker product of doubly stochastic matrices is doubly stochastic, so every variant
  keeps the paper's relaxation; with exact factors each one equals the exact G-CNN layer.
  Structured sharing needs a 2-D kernel grid.
  """

  kind = "group"
  _build_kernels = staticmethod(kernel_ops.group_kernels)  # HWIO [k, k, C_in·G, C_out·G]
  _convolve = staticmethod(kernel_ops.group_conv)
  _build_kernels_nd = staticmethod(kernel_ops.group_kernels_nd)
  _convolve_nd = staticmethod(kernel_ops.group_conv_nd)

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *,
               sharing: str = "full", spatial_source: Optional[WSLiftConv] = None,
               group_logits_source: Optional[RepresentationLogits] = None,
               cayley_temperature: float = 0.05, **kwargs):
    if sharing not in SHARINGS:
      raise ValueError(f"sharing must be one of {SHARINGS}; got {sharing!r}")
    if not cayley_temperature > 0:
      raise ValueError(f"cayley_temperature must be > 0; got {cayley_temperature!r}")
    self.sharing, self.cayley_temperature = sharing, float(cayley_temperature)
    super().__init__(in_features, out_features, kernel_size, spatial_source=spatial_source,
                     group_logits_source=group_logits_source, **kwargs)

  def _init_stack(self, key, spatial_source=None, group_logits_source=None):
    # Attributes that may later hold parameters or modules are marked as data up front.
    self.logits, self.group_logits, self.spatial_logits = (nnx.data(None),) * 3
    self.spatial_source = nnx.data(None)
    if self.group is not None:
      self.sharing = "full"
      return
    if self.sharing == "full":
      self.logits = self._new_logits(self.representation_size, key)
      return
    if self.spatial_dims != 2:
      raise ValueError(f"sharing={self.sharing!r} needs a 2-D kernel grid; got "
                       f"spatial_dims={self.spatial_dims} (use sharing='full')")
    g, k = self.num_elements, self.kernel_size
    group_key, spatial_key = jax.random.split(key)
    if self.sharing == "kronecker":
      self.spatial_logits = self._new_logits(k * k, spatial_key, spatial=True)
    else:
      if not isinstance(spatial_source, WSLiftConv) or not spatial_source.is_learned:
        raise ValueError(f"sharing={self.sharing!r} needs spatial_source, a learned "
                         f"WSLiftConv; got {spatial_source!r}")
      if (spatial_source.kernel_size, spatial_source.num_elements,
          spatial_source.fix_identity) != (k, g, self.fix_identity):
        raise ValueError(
            f"spatial_source must have kernel_size={k}, num_elements={g} and "
            f"fix_identity={self.fix_identity} like this layer; got kernel_size="
            f"{spatial_source.kernel_size}, num_elements={spatial_source.num_elements}, "
            f"fix_identity={spatial_source.fix_identity}")
      self.spatial_source = spatial_source
      if self.sharing == "tied_cyclic" and spatial_source.elements == "independent":
        raise ValueError("sharing='tied_cyclic' needs a lifting layer whose elements are "
                         "powers of one generator (elements='powers' or 'power_blend'); got "
                         "elements='independent'")
    if self.sharing == "tied_shared":
      if not isinstance(group_logits_source, RepresentationLogits):
        raise ValueError(f"sharing='tied_shared' needs group_logits_source, the "
                         f"RepresentationLogits [G-1, G, G] shared by the group layers; got "
                         f"{group_logits_source!r}")
      self.group_logits = group_logits_source
    elif self.sharing not in ("tied_cayley", "tied_cyclic"):
      self.group_logits = self._new_logits(g, group_key)

  @property
  def representation_size(self) -> int:
    return self.num_elements * self.kernel_size ** self.spatial_dims

  def _weight_shape(self):
    return (self.out_features, self.in_features, self.representation_size)

  def _reference_init(self, key, shape, fan_in):
    bound = 1.0 / math.sqrt(fan_in)  # torch kaiming_uniform_(a=√5)
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)

  def _exact_stack(self):
    return groups_ops.shift_twist_permutations(self.group, self.kernel_size)

  @property
  def _factorised(self) -> bool:
    return self.is_learned and self.sharing != "full"

  def _own_logits(self):
    # tied_shared's A is owned by the model-level source; the first layer counts it.
    owned = [self.logits, self.spatial_logits]
    if self.sharing != "tied_shared":
      owned.append(self.group_logits)
    return [logits for logits in owned if logits is not None]

  def factors(self) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(A [G, G, G], B [G, k², k²])`` of a factorised learned stack (``sharing != "full"``)."""
    if not self._factorised:
      raise ValueError(f"factors() needs a learned factorised stack; this layer has "
                       f"sharing={self.sharing!r}, group={self.group!r}, "
                       f"frozen={self.is_fixed}")
    k2 = self.kernel_size ** 2
    if self.spatial_source is not None:
      spatial = self.spatial_source.representation_stack()
    else:
      spatial = self._with_identity(self._constrain(self.spatial_logits[...]), k2)
    if self.sharing == "tied_cayley":
      group = structure_ops.soft_cayley_factors(spatial, self.cayley_temperature)
    elif self.sharing == "tied_cyclic":
      group = structure_ops.cyclic_shifts(self.num_elements)
    else:
      group = self._with_identity(
          None if self.group_logits is None else self._constrain(self.group_logits[...]),
          self.num_elements)
    return group, spatial

  def _learned_stack(self):
    if self.sharing == "full":
      learned = None if self.logits is None else self._constrain(self.logits[...])
      return self._with_identity(learned, self.representation_size)
    group, spatial = self.factors()
    return jnp.einsum("gab,gmn->gambn", group, spatial).reshape(
        self.num_elements, self.representation_size, self.representation_size)

  def _own_spatial_stack(self):
    if self.spatial_logits is None:
      return None
    return self._with_identity(self._constrain(self.spatial_logits[...]),
                               self.kernel_size ** 2)

  def _drop_learned(self):
    self.logits = self.group_logits = self.spatial_logits = None
    self.spatial_source = None
    self.sharing = "full"

  def expanded_kernel(self) -> jnp.ndarray:
    if self._factorised:
      return structure_ops.kronecker_group_kernels(*self.factors(), self.canonical_weight())
    return super().expanded_kernel()

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    if not self._factorised:
      return super().__call__(x)
    if x.ndim != 5 or x.shape[-1] != self.num_elements or x.shape[-2] != self.in_features:
      raise ValueError(f"x must have shape [B, H, W, C_in={self.in_features}, "
                       f"G={self.num_elements}]; got {tuple(x.shape)}")
    y = kernel_ops.conv2d(x.reshape(*x.shape[:3], -1), self.expanded_kernel(), self.padding,
                          self.compute_dtype)
    y = y.reshape(*y.shape[:3], self.out_features, self.num_elements)
    return y if self.bias is None else y + self.bias[...][:, None]
