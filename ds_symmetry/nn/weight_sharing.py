"""Weight-sharing convolutions (Flax NNX): learned doubly stochastic or exact, frozen stacks.

Both layers own canonical kernels ``θ`` and a representation stack ``R`` and compute
``Conv2D[x, R·θ]`` through ``ops.lift_conv`` / ``ops.group_conv``. The stack is either

* learned (``group=None``): ``R = [I, sinkhorn(Θ_1), …, sinkhorn(Θ_{G-1})]`` with free logits
  ``Θ`` (a :class:`RepresentationLogits`), one stack shared by all channels of the layer; or
* exact and frozen (``group="C4"``, ``"D4"``, …): the permutations from ``ops.groups``. This
  *is* the G-CNN — the same code path with fixed permutations, not a second implementation.

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
  identity);
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
from ds_symmetry.ops.regularisers import entropy, norm_loss
from ds_symmetry.ops.sinkhorn import marginal_error, sinkhorn

LOGITS_INITS = ("uniform", "balanced_uniform", "normal", "kaiming_uniform", "identity")


class RepresentationLogits(nnx.Param):
  """Free logits of a learned representation stack. The trainer gives them their own
  learning rate (the reference's ``learning_rate_reps``) by filtering on this type."""


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
  raise ValueError(f"logits_init must be one of {LOGITS_INITS}; got {mode!r}")


class _WeightSharingConv(nnx.Module):
  """Shared machinery of :class:`WSLiftConv` and :class:`WSGroupConv`."""

  kind: str = ""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *,
               num_elements: Optional[int] = None, group: Optional[str] = None,
               spatial_dims: Optional[int] = None,
               fix_identity: bool = True,
               logits_init: str = "uniform", identity_scale: float = 5.0,
               sinkhorn_iters: int = 20, sinkhorn_tau: float = 1.0,
               sinkhorn_tol: Optional[float] = None, remat_sinkhorn: bool = False,
               padding="VALID", use_bias: bool = True, compute_dtype=None,
               rngs: nnx.Rngs):
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
    if logits_init not in LOGITS_INITS:
      raise ValueError(f"logits_init must be one of {LOGITS_INITS}; got {logits_init!r}")
    self.spatial_dims = kernel_ops.check_spatial_dims(2 if spatial_dims is None else spatial_dims)
    kernel_ops._check_padding_nd(padding, self.spatial_dims)  # pylint: disable=protected-access

    self.in_features, self.out_features = in_features, out_features
    self.kernel_size, self.num_elements, self.group = kernel_size, num_elements, group
    self.fix_identity = bool(fix_identity)
    self.sinkhorn_iters, self.sinkhorn_tau, self.sinkhorn_tol = (
        sinkhorn_iters, float(sinkhorn_tau), sinkhorn_tol)
    self.remat_sinkhorn, self.padding, self.compute_dtype = remat_sinkhorn, padding, compute_dtype

    if group is not None:
      self._exact_stack()  # raises ValueError now if the group does not act on this grid
    d = self.representation_size
    weight_key, logits_key = rngs.params(), rngs.params()
    self.weight = nnx.Param(self._init_weight(weight_key))
    self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
    num_learned = num_elements - 1 if self.fix_identity else num_elements
    if group is None and num_learned > 0:
      self.logits = RepresentationLogits(
          _init_logits(logits_key, (num_learned, d, d), logits_init, identity_scale))
    else:
      self.logits = None

  # Subclasses define ``representation_size`` (d), ``_init_weight``, ``_exact_stack``, and
  # the ops they apply: ``_build_kernels`` and ``_convolve`` (2-D), ``_build_kernels_nd`` and
  # ``_convolve_nd`` (1-D and 3-D).

  def expanded_kernel(self) -> jnp.ndarray:
    """The HWIO kernel holding every transformed copy (output channel ``o·G + g``)."""
    if self.spatial_dims != 2:
      return self._build_kernels_nd(self.representation_stack(), self.weight[...],
                                    self.spatial_dims)
    return self._build_kernels(self.representation_stack(), self.weight[...])

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    bias = None if self.bias is None else self.bias[...]
    if self.spatial_dims != 2:
      return self._convolve_nd(x, self.representation_stack(), self.weight[...], bias,
                               self.padding, self.compute_dtype, spatial_dims=self.spatial_dims)
    return self._convolve(x, self.representation_stack(), self.weight[...], bias,
                          self.padding, self.compute_dtype)

  @property
  def is_learned(self) -> bool:
    return self.group is None

  # -- the stack --------------------------------------------------------------------------
  def _sinkhorn(self, logits):
    # remat_sinkhorn: the backward pass recomputes each iteration from saved row/column
    # potentials instead of keeping num_iters full [n, d, d] iterates alive.
    return sinkhorn(logits, num_iters=self.sinkhorn_iters, tau=self.sinkhorn_tau,
                    tol=self.sinkhorn_tol, memory_efficient=self.remat_sinkhorn)

  def representation_stack(self) -> jnp.ndarray:
    """The layer's ``[G, d, d]`` stack: doubly stochastic (learned) or exact permutations."""
    if self.group is not None:
      return self._exact_stack()
    d = self.representation_size
    parts = []
    if self.fix_identity:
      parts.append(jnp.eye(d, dtype=jnp.float32)[None])
    if self.logits is not None:
      parts.append(self._sinkhorn(self.logits[...].astype(jnp.float32)))
    return jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]

  def regularizers(self) -> dict[str, jnp.ndarray]:
    """``norm`` (reference norm loss on the raw logits) and ``entropy`` (of the stack,
    fixed identity included, as the reference); zeros for exact stacks."""
    if self.logits is None:
      zero = jnp.zeros((), jnp.float32)
      return {"norm": zero, "entropy": zero}
    return {"norm": norm_loss(self.logits[...]), "entropy": entropy(self.representation_stack())}

  def marginal_error(self) -> jnp.ndarray:
    """Largest |row sum − 1| / |column sum − 1| over the learned part of the stack."""
    if self.logits is None:
      return jnp.zeros((), jnp.float32)
    return jnp.max(marginal_error(self._sinkhorn(self.logits[...].astype(jnp.float32))))


class WSLiftConv(_WeightSharingConv):
  """Lifting layer: ``[B, H, W, C_in]`` → ``[B, H', W', C_out, G]`` (``[B, *grid, …]`` for
  ``spatial_dims`` 1 or 3).

  ``R`` acts on the flattened k×k kernel (d = k², or k^D)."""

  kind = "lift"
  _build_kernels = staticmethod(kernel_ops.lift_kernels)  # HWIO [k, k, C_in, C_out·G]
  _convolve = staticmethod(kernel_ops.lift_conv)
  _build_kernels_nd = staticmethod(kernel_ops.lift_kernels_nd)
  _convolve_nd = staticmethod(kernel_ops.lift_conv_nd)

  @property
  def representation_size(self) -> int:
    return self.kernel_size ** self.spatial_dims

  def _init_weight(self, key):
    fan_in = self.in_features * self.representation_size
    std = 1.0 / math.sqrt(3.0 * fan_in)  # torch kaiming_normal_(a=√5)
    return std * jax.random.normal(
        key, (self.out_features, self.in_features, self.representation_size), jnp.float32)

  def _exact_stack(self):
    return groups_ops.spatial_permutations(self.group, self.kernel_size)



class WSGroupConv(_WeightSharingConv):
  """Group convolution: ``[B, H, W, C_in, G]`` → ``[B, H', W', C_out, G]`` (``[B, *grid, …]``
  for ``spatial_dims`` 1 or 3).

  ``R`` acts jointly on (input element, y, x), d = G·k² (G·k^D); the exact version is the
  shift-twist (regular) representation."""

  kind = "group"
  _build_kernels = staticmethod(kernel_ops.group_kernels)  # HWIO [k, k, C_in·G, C_out·G]
  _convolve = staticmethod(kernel_ops.group_conv)
  _build_kernels_nd = staticmethod(kernel_ops.group_kernels_nd)
  _convolve_nd = staticmethod(kernel_ops.group_conv_nd)

  @property
  def representation_size(self) -> int:
    return self.num_elements * self.kernel_size ** self.spatial_dims

  def _init_weight(self, key):
    fan_in = self.in_features * self.representation_size
    bound = 1.0 / math.sqrt(fan_in)  # torch kaiming_uniform_(a=√5)
    return jax.random.uniform(
        key, (self.out_features, self.in_features, self.representation_size), jnp.float32,
        -bound, bound)

  def _exact_stack(self):
    return groups_ops.shift_twist_permutations(self.group, self.kernel_size)
