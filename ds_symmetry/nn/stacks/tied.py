"""Group-convolution stacks tied to the lifting layer: ``R_g = A_g ⊗ B_g`` with ``B`` the
lifting layer's learned stack, so the network learns one spatial action.

``A`` is learned per layer (:class:`TiedFactors`), shared by every group layer
(:class:`TiedFactors` with ``shared=True``), derived from how ``B``'s elements compose
(:class:`TiedCayleyFactors`) or the cyclic shifts of a stack of powers
(:class:`TiedCyclicFactors`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from ds_symmetry.nn.stacks.base import (LearnedMatrices, RepresentationLogits,
                                        StackParameterisation, Variables)
from ds_symmetry.ops import stacks as stack_ops
from ds_symmetry.ops import structure as structure_ops


@dataclasses.dataclass(frozen=True)
class _Tied(StackParameterisation):
  """Shared parts: the lifting layer as ``spatial_source`` and its stack as ``B``."""

  matrices: LearnedMatrices
  num_elements: int
  kernel_size: int
  factorised: ClassVar[bool] = True
  tie: ClassVar[str] = ""

  @property
  def size(self) -> int:
    """``d = G·k²``."""
    return self.num_elements * self.kernel_size ** 2

  def _check_source(self, spatial_source: Any) -> None:
    """``spatial_source`` must be a learned lifting layer with this stack's ``k``, ``G`` and
    fixed identity."""
    if (getattr(spatial_source, "kind", None) != "lift"
        or not getattr(spatial_source, "is_learned", False)):
      raise ValueError(f"tie={self.tie!r} needs spatial_source, a learned "
                       f"WSLiftConv; got {spatial_source!r}")
    k, g, fix = self.kernel_size, self.num_elements, self.matrices.fix_identity
    if (spatial_source.kernel_size, spatial_source.num_elements,
        spatial_source.fix_identity) != (k, g, fix):
      raise ValueError(
          f"spatial_source must have kernel_size={k}, num_elements={g} and "
          f"fix_identity={fix} like this layer; got kernel_size="
          f"{spatial_source.kernel_size}, num_elements={spatial_source.num_elements}, "
          f"fix_identity={spatial_source.fix_identity}")

  def _group(self, spatial: jnp.ndarray, variables: Variables) -> jnp.ndarray:
    raise NotImplementedError

  def factors(self, variables: Variables) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(A [G, G, G], B [G, k², k²])``, ``B`` the lifting layer's stack."""
    spatial = variables["spatial_source"].representation_stack()
    return self._group(spatial, variables), spatial

  def stack(self, variables: Variables) -> jnp.ndarray:
    """The materialised ``[G, G·k², G·k²]``."""
    return stack_ops.kronecker_stack(*self.factors(variables))


@dataclasses.dataclass(frozen=True)
class TiedFactors(_Tied):
  """``B`` the lifting layer's stack; ``A`` learned: the layer's own logits ``[G−1, G, G]``
  in ``group_logits`` (``shared=False``, ``tie="spatial"``), or one
  ``RepresentationLogits`` shared by every group layer and owned by the first
  (``shared=True``, ``tie="shared"``; pass it as ``group_logits_source``).

  Attributes:
    matrices: how ``A``'s learned matrices are made.
    num_elements: ``G``.
    kernel_size: ``k``.
    shared: whether ``A`` is shared (and regularised by its owner).
  """

  shared: bool = False
  variable_names: ClassVar[tuple[str, ...]] = ("spatial_source", "group_logits")

  @property
  def tie(self) -> str:  # type: ignore[override]
    """The ``tie`` option this is: ``"spatial"`` or ``"shared"``."""
    return "shared" if self.shared else "spatial"

  def create(self, key: jax.Array, spatial_source=None, group_logits_source=None,
             **sources) -> dict:
    """``{"spatial_source": the lifting layer, "group_logits": A's logits}``."""
    del sources
    self._check_source(spatial_source)
    if self.shared:
      if not isinstance(group_logits_source, RepresentationLogits):
        raise ValueError(f"tie='shared' needs group_logits_source, the "
                         f"RepresentationLogits [G-1, G, G] shared by the group layers; got "
                         f"{group_logits_source!r}")
      return {"spatial_source": spatial_source, "group_logits": group_logits_source}
    group_key, _ = jax.random.split(key)
    count = self.matrices.learned_count(self.num_elements)
    return {"spatial_source": spatial_source,
            "group_logits": self.matrices.create(group_key, count, self.num_elements)}

  def _group(self, spatial: jnp.ndarray, variables: Variables) -> jnp.ndarray:
    logits = variables["group_logits"]
    return self.matrices.with_identity(
        None if logits is None else self.matrices.constrain(logits[...]), self.num_elements)

  def owned_matrices(self, variables: Variables) -> list:
    """``A``'s learned matrices with their logits (none when shared)."""
    logits = variables["group_logits"]
    if self.shared or logits is None:
      return []
    return [(logits, self.matrices.constrain(logits[...]))]


@dataclasses.dataclass(frozen=True)
class TiedCayleyFactors(_Tied):
  """``B`` the lifting layer's stack; ``A`` derived from how ``B``'s elements compose
  (``ops.structure.soft_cayley_factors``): no parameters of its own. With an exact ``B`` the
  layer is exactly a G-CNN layer in ``B``'s labelling of the elements.

  Attributes:
    matrices: the fixed-identity setting.
    num_elements: ``G``.
    kernel_size: ``k``.
    cayley_temperature: the soft Cayley table's temperature.
  """

  cayley_temperature: float = 0.05
  tie: ClassVar[str] = "cayley"
  variable_names: ClassVar[tuple[str, ...]] = ("spatial_source",)

  def create(self, key: jax.Array, spatial_source=None, **sources) -> dict:
    """``{"spatial_source": the lifting layer}``."""
    del key, sources
    self._check_source(spatial_source)
    return {"spatial_source": spatial_source}

  def _group(self, spatial: jnp.ndarray, variables: Variables) -> jnp.ndarray:
    return structure_ops.soft_cayley_factors(spatial, self.cayley_temperature)


@dataclasses.dataclass(frozen=True)
class TiedCyclicFactors(_Tied):
  """``B`` the lifting layer's stack of powers ``[I, g, g², …]``; ``A_m`` the cyclic shift by
  ``m`` (``ops.structure.cyclic_shifts``): ``g^m g^q = g^{m+q}`` for any generator of order
  dividing ``G``, so no group is named. No parameters of its own.

  Attributes:
    matrices: the fixed-identity setting.
    num_elements: ``G``.
    kernel_size: ``k``.
  """

  tie: ClassVar[str] = "cyclic"
  variable_names: ClassVar[tuple[str, ...]] = ("spatial_source",)

  def create(self, key: jax.Array, spatial_source=None, **sources) -> dict:
    """``{"spatial_source": the lifting layer}``; its elements must be powers of one
    generator."""
    del key, sources
    self._check_source(spatial_source)
    if not spatial_source.parameterisation.powers_of_one_generator:
      raise ValueError("tie='cyclic' needs a lifting layer whose elements are "
                       "powers of one generator (elements='powers' or 'power_blend'); got "
                       f"elements={spatial_source.elements!r}")
    return {"spatial_source": spatial_source}

  def _group(self, spatial: jnp.ndarray, variables: Variables) -> jnp.ndarray:
    return structure_ops.cyclic_shifts(self.num_elements)
