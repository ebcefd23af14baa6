"""Weight-sharing convolutions (Flax NNX): learned doubly stochastic or exact, frozen stacks.

Both layers own canonical kernels ``θ`` and a representation stack ``R`` and compute
``Conv2D[x, R·θ]`` through ``ops.lift_conv`` / ``ops.group_conv``. The stack is either

* learned (``group=None``): ``R = [I, sinkhorn(Θ_1), …, sinkhorn(Θ_{G-1})]`` with free logits
  ``Θ`` (a :class:`RepresentationLogits`), one stack shared by all channels of the layer; or
* exact and frozen (``group="C4"``, ``"D4"``, …): the permutations from ``ops.groups``. This
  *is* the G-CNN — the same code path with fixed permutations, not a second implementation; or
* frozen after learning (:meth:`freeze_stack`, a :class:`FixedStack`): e.g. the exact stacks of
  the G-CNN a learned network was rounded to (``ds_symmetry.discovery``).

Group layers can structure a learned stack (``factorise``: Kronecker factors; ``tie``: tied to
the lifting layer, factors from its Cayley table, …; see :class:`WSGroupConv`), and every
learned matrix can be
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

How a stack is made is not the layers' business: each way (independent elements, powers, power
blends, Kronecker and tied factors, an exact group, a frozen stack) is one parameterisation in
``ds_symmetry.nn.stacks`` (``layer.parameterisation``); the layers ask it for the stack and its
regularisers, and keep its variables (``logits``, ``group_logits``, ``spatial_logits``,
``spatial_source``, ``fixed_stack``) as their own attributes.

The fixed identity (``fix_identity=True``, the reference's default) is the first element, is
not learned and does not pass through Sinkhorn (the reference adds 1e-16 to it; irrelevant in
float32 outside ``entropy``, which clamps at 1e-16 anyway).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from ds_symmetry.nn import stacks
from ds_symmetry.nn.stacks import (CONSTRAINTS, FixedStack, RepresentationLogits,
                                   StackParameterisation)
from ds_symmetry.ops import groups as groups_ops
from ds_symmetry.ops import kernels as kernel_ops
from ds_symmetry.ops import structure as structure_ops
from ds_symmetry.ops.stacks import LOGITS_INITS



WEIGHT_INITS = ("reference", "se2cnn")
KERNEL_MASKS = ("none", "disk")


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

  The stack comes from ``self.parameterisation`` (a ``stacks.StackParameterisation``): an
  ``ExactGroup`` for ``group=...``, else the learned one the subclass's options name, replaced
  by a ``FrozenStack`` on :meth:`freeze_stack`.
  """

  kind: str = ""
  # Attributes a stack's variables may occupy; every layer of the kind has them (``None`` when
  # its stack does not use them).
  _stack_attributes: tuple[str, ...] = ()

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
    # Attributes that may later hold parameters or modules are marked as data up front.
    self.fixed_stack: Optional[FixedStack] = nnx.data(None)

    exact = None
    if group is not None:  # raises ValueError now if the group does not act on this grid
      exact = stacks.ExactGroup(group, kernel_size, acts_on_elements=self.kind == "group")
    weight_key, logits_key = rngs.params(), rngs.params()
    self.weight = nnx.Param(self._init_weight(weight_key))
    self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
    for name in self._stack_attributes:
      setattr(self, name, nnx.data(None))
    # Static and private (left out of the layer's repr); read through ``parameterisation``.
    self._parameterisation: StackParameterisation = (
        exact if exact is not None else self._learned_parameterisation())
    self._create_stack(logits_key, **stack_options)

  # Subclasses define ``representation_size`` (d), ``_weight_shape``, ``_reference_init``,
  # ``_learned_parameterisation`` (their stack options → ``ds_symmetry.nn.stacks``), and the
  # ops they apply: ``_build_kernels`` / ``_convolve`` (2-D), ``_build_kernels_nd`` /
  # ``_convolve_nd`` (1-D, 3-D).

  @property
  def parameterisation(self) -> StackParameterisation:
    """How this layer's stack is made (a ``ds_symmetry.nn.stacks`` parameterisation)."""
    return self._parameterisation

  def _learned_matrices(self) -> stacks.LearnedMatrices:
    """This layer's settings for making learned matrices from free parameters."""
    return stacks.LearnedMatrices(
        constraint=self.constraint, kernel_size=self.kernel_size, fix_identity=self.fix_identity,
        logits_init=self.logits_init, identity_scale=self.identity_scale,
        sinkhorn_iters=self.sinkhorn_iters, sinkhorn_tau=self.sinkhorn_tau,
        sinkhorn_tol=self.sinkhorn_tol, remat_sinkhorn=self.remat_sinkhorn)

  def _learned_parameterisation(self) -> StackParameterisation:
    raise NotImplementedError

  def _create_stack(self, key, **sources) -> None:
    self._set_stack_variables(self.parameterisation.create(key, **sources))

  def _set_stack_variables(self, variables: dict[str, Any]) -> None:
    for name, value in variables.items():
      setattr(self, name, value)

  def _stack_variables(self) -> dict[str, Any]:
    """The parameterisation's variables, read from this layer's attributes."""
    return {name: getattr(self, name) for name in self.parameterisation.variable_names}

  @property
  def num_learned(self) -> int:
    """Learned elements per stack (the fixed identity is not learned)."""
    return self.num_elements - 1 if self.fix_identity else self.num_elements

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
    return self.parameterisation.learned

  @property
  def is_fixed(self) -> bool:
    """Whether a learned stack was replaced by a frozen one (:meth:`freeze_stack`)."""
    return self.fixed_stack is not None

  def freeze_stack(self, stack) -> None:
    """Replaces the learned stack by the frozen ``stack [G, d, d]`` (e.g. exact permutations
    found by ``analysis.discover``); the learned parameters are dropped."""
    frozen = stacks.FrozenStack(self.num_elements, self.representation_size)
    variables = frozen.create(stack=stack)  # checks the shape
    if self.group is not None:
      raise ValueError(f"this layer's stack is the exact group {self.group!r}; only learned "
                       f"stacks can be frozen")
    for name in self.parameterisation.variable_names:
      setattr(self, name, None)
    self._parameterisation = frozen
    self._set_stack_variables(variables)

  def representation_stack(self) -> jnp.ndarray:
    """The layer's ``[G, d, d]`` stack: learned (doubly stochastic by default), exact
    permutations, or frozen."""
    return self.parameterisation.stack(self._stack_variables())

  def regularizers(self) -> dict[str, jnp.ndarray]:
    """``norm`` (reference norm loss on the raw logits; Sinkhorn only), ``entropy`` (of the
    stacks the layer owns, with the fixed identity, as the reference) and ``isometry``
    (:func:`ops.structure.isometry_loss` of the layer's own spatial stack, if any); zeros for
    exact or frozen stacks."""
    return self.parameterisation.regularizers(self._stack_variables())

  def marginal_error(self) -> jnp.ndarray:
    """Largest |row sum − 1| / |column sum − 1| over the learned matrices the layer owns."""
    return self.parameterisation.marginal_error(self._stack_variables())


class WSLiftConv(_WeightSharingConv):
  """Lifting layer: ``[B, H, W, C_in]`` → ``[B, H', W', C_out, G]`` (``[B, *grid, …]`` for
  ``spatial_dims`` 1 or 3).

  ``R`` acts on the flattened k×k kernel (d = k², or k^D). With a ``tie`` other than
  ``"none"`` group layers reuse this layer's learned stack as their spatial factor."""

  kind = "lift"
  _stack_attributes = ("logits",)
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
    generates (a 90° rotation: four distinct copies; a reflection: two, each repeated).

    The stacks themselves are ``stacks.IndependentElements``, ``stacks.GeneratorPowers`` and
    ``stacks.PowerBlend``."""
    stacks.check_lift_options(elements, kwargs.get("fix_identity", True),
                              kwargs.get("constraint", "sinkhorn"))
    self.elements = elements
    super().__init__(in_features, out_features, kernel_size, **kwargs)

  def _learned_parameterisation(self) -> StackParameterisation:
    return stacks.lift_stack(self.elements, self._learned_matrices(), self.num_elements,
                             self.kernel_size, self.spatial_dims)

  def _create_stack(self, key, **sources) -> None:
    if sources:  # a lifting stack takes nothing from other layers
      raise TypeError(f"WSLiftConv got unexpected keyword arguments {sorted(sources)}")
    super()._create_stack(key)

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
  def representation_size(self) -> int:
    return self.kernel_size ** self.spatial_dims

  def _weight_shape(self):
    return (self.out_features, self.in_features, self.representation_size)

  def _reference_init(self, key, shape, fan_in):
    std = 1.0 / math.sqrt(3.0 * fan_in)  # torch kaiming_normal_(a=√5)
    return std * jax.random.normal(key, shape, jnp.float32)


class WSGroupConv(_WeightSharingConv):
  """Group convolution: ``[B, H, W, C_in, G]`` → ``[B, H', W', C_out, G]`` (``[B, *grid, …]``
  for ``spatial_dims`` 1 or 3).

  ``R`` acts jointly on (input element, y, x), d = G·k² (G·k^D); the exact version is the
  shift-twist (regular) representation ``Λ(g) ⊗ L(g)``. How a learned stack is structured is
  two options, ``factorise`` (what the stack is a product of) and ``tie`` (what its factors are
  tied to); each pair is a parameterisation in ``ds_symmetry.nn.stacks``:

  * ``factorise="none"`` (default, the paper): every element is a free ``[G·k², G·k²]`` matrix
    (``stacks.IndependentElements``).
  * ``factorise="kronecker"``, ``tie="none"``: ``R_g = A_g ⊗ B_g`` with the layer's own
    ``A [G, G, G]`` (input-element axis) and ``B [G, k², k²]`` (kernel plane)
    (``stacks.KroneckerFactors``). The kernel is built from the factors
    (``ops.structure.kronecker_group_kernels``), never from the ``[G, G·k², G·k²]`` stack.
  * ``tie="spatial"``: ``B`` is the lifting layer's learned stack (``spatial_source``), shared
    by every group layer: the network learns one spatial action. The layer learns only ``A``
    (``stacks.TiedFactors``).
  * ``tie="shared"``: as ``"spatial"``, and one ``A`` (``group_logits_source``) is shared by
    all group layers too (the layer that owns it is built with ``tie="spatial"``).
  * ``tie="cayley"``: as ``"spatial"``, and ``A`` is not learned at all but derived from how
    ``B``'s elements compose (``ops.structure.soft_cayley_factors``;
    ``stacks.TiedCayleyFactors``). With an exact ``B`` the layer is exactly a G-CNN layer in
    ``B``'s labelling of the elements.
  * ``tie="cyclic"``: as ``"spatial"`` for a lifting layer whose elements are powers of one
    generator (``elements="powers"`` or ``"power_blend"``), with ``A_m`` the cyclic shift by
    ``m`` (``A_m[(m + q) mod G, q] = 1``; ``stacks.TiedCyclicFactors``): element ``m`` is
    ``g^m`` and ``g^m g^q = g^{m+q}``, which holds for *any* generator of order dividing ``G``
    (a rotation, a flip, the identity), so this names no group; the data still choose ``g``.
    Unlike ``"cayley"`` it does not read the composition law off a blurred ``B`` (uniform
    at a symmetric start, which makes every element slot look alike to the rest of the
    network).

  Every ``tie`` other than ``"none"`` needs ``factorise="kronecker"``. The old single name
  (``sharing="tied_cayley"`` …) is refused with its pair (``stacks.STRUCTURES``).

  A Kronecker product of doubly stochastic matrices is doubly stochastic, so every variant
  keeps the paper's relaxation; with exact factors each one equals the exact G-CNN layer.
  Structured sharing needs a 2-D kernel grid.
  """

  kind = "group"
  _stack_attributes = ("logits", "group_logits", "spatial_logits", "spatial_source")
  _build_kernels = staticmethod(kernel_ops.group_kernels)  # HWIO [k, k, C_in·G, C_out·G]
  _convolve = staticmethod(kernel_ops.group_conv)
  _build_kernels_nd = staticmethod(kernel_ops.group_kernels_nd)
  _convolve_nd = staticmethod(kernel_ops.group_conv_nd)

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *,
               factorise: str = "none", tie: str = "none",
               spatial_source: Optional[WSLiftConv] = None,
               group_logits_source: Optional[RepresentationLogits] = None,
               cayley_temperature: float = 0.05, **kwargs):
    """``factorise`` (one of ``stacks.FACTORISATIONS``) and ``tie`` (one of ``stacks.TIES``):
    how a learned stack is structured (see the class docstring); ``spatial_source``: the
    lifting layer a ``tie`` other than ``"none"`` takes ``B`` from; ``group_logits_source``:
    the shared ``A`` of ``tie="shared"``; ``cayley_temperature``: the soft Cayley table's
    (``tie="cayley"``). Other options: the shared ones (module docstring)."""
    if "sharing" in kwargs:
      raise ValueError(stacks.renamed_sharing(kwargs["sharing"]))
    stacks.check_group_options(factorise, tie, cayley_temperature)
    self.factorise, self.tie = factorise, tie
    self.cayley_temperature = float(cayley_temperature)
    super().__init__(in_features, out_features, kernel_size, spatial_source=spatial_source,
                     group_logits_source=group_logits_source, **kwargs)
    if self.group is not None:
      self.factorise, self.tie = "none", "none"

  def _learned_parameterisation(self) -> StackParameterisation:
    return stacks.group_stack(self.factorise, self.tie, self._learned_matrices(),
                              self.num_elements, self.kernel_size, self.spatial_dims,
                              self.cayley_temperature)

  @property
  def representation_size(self) -> int:
    return self.num_elements * self.kernel_size ** self.spatial_dims

  def _weight_shape(self):
    return (self.out_features, self.in_features, self.representation_size)

  def _reference_init(self, key, shape, fan_in):
    bound = 1.0 / math.sqrt(fan_in)  # torch kaiming_uniform_(a=√5)
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)

  @property
  def _factorised(self) -> bool:
    return self.parameterisation.factorised

  def freeze_stack(self, stack) -> None:
    super().freeze_stack(stack)
    self.factorise, self.tie = "none", "none"

  def factors(self) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(A [G, G, G], B [G, k², k²])`` of a factorised learned stack
    (``factorise="kronecker"``)."""
    if not self._factorised:
      raise ValueError(f"factors() needs a learned factorised stack; this layer has "
                       f"factorise={self.factorise!r}, group={self.group!r}, "
                       f"frozen={self.is_fixed}")
    return self.parameterisation.factors(self._stack_variables())

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
