"""Stacks of powers of one generator: ``[I, B, B², …]`` or the blend of isometries' powers."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp

from ds_symmetry.nn.stacks.base import LearnedMatrices, StackParameterisation, Variables
from ds_symmetry.ops import stacks as stack_ops
from ds_symmetry.ops import structure as structure_ops


def _generator_count(matrices: LearnedMatrices, num_elements: int) -> int:
  """One learned generator (none for a stack of one element)."""
  return 1 if num_elements > 1 else matrices.learned_count(num_elements)


@dataclasses.dataclass(frozen=True)
class GeneratorPowers(StackParameterisation):
  """``R = [I, B, B², …, B^{G−1}]`` of one learned generator ``B`` (made by ``matrices`` from
  logits ``[1, d, d]`` or isometry blend weights ``[1, 8]`` in the layer's ``logits``).

  Distinct elements as soon as ``B`` has order ``G``; a cyclic group whenever ``B`` is a
  permutation with ``B^G = I``. Needs the fixed identity (element 0).

  Attributes:
    matrices: how the generator is made.
    num_elements: ``G``.
    size: ``d = k^D``.
    spatial_dims: the kernel grid's rank ``D`` (the isometry prior needs 2).
  """

  matrices: LearnedMatrices
  num_elements: int
  size: int
  spatial_dims: int = 2
  powers_of_one_generator: ClassVar[bool] = True
  variable_names: ClassVar[tuple[str, ...]] = ("logits",)

  def create(self, key: jax.Array, **sources) -> dict:
    """``{"logits": RepresentationLogits [1, d, d] or [1, 8], or None}``."""
    del sources
    count = _generator_count(self.matrices, self.num_elements)
    return {"logits": self.matrices.create(key, count, self.size, spatial=True)}

  def stack(self, variables: Variables) -> jnp.ndarray:
    """``[G, d, d]``."""
    logits = variables["logits"]
    learned = None if logits is None else self.matrices.constrain(logits[...])
    if learned is not None:
      learned = stack_ops.generator_powers(learned, self.num_elements - 1)
    return self.matrices.with_identity(learned, self.size)

  def owned_matrices(self, variables: Variables) -> list:
    """The generator ``[1, d, d]`` with its logits."""
    logits = variables["logits"]
    return [] if logits is None else [(logits, self.matrices.constrain(logits[...]))]

  def spatial_matrices(self, variables: Variables) -> Optional[jnp.ndarray]:
    """The whole stack on a 2-D grid, else ``None``."""
    if self.spatial_dims != 2 or variables["logits"] is None:
      return None
    return self.stack(variables)


@dataclasses.dataclass(frozen=True)
class PowerBlend(StackParameterisation):
  """Element ``m`` is ``Σ_j w_j P_j^m`` over candidate isometry generators ``P_j`` of the
  ``k×k`` grid, one per distinct cyclic stack (``ops.structure.distinct_cyclic_generators``),
  with one learned ``w = softmax(logits / tau)``: logits ``[1, C]`` in the layer's
  ``logits``. Equals :class:`GeneratorPowers` whenever ``w`` is one-hot; off the vertices every
  power moves with ``w``. Needs ``constraint="isometries"`` and the fixed identity.

  Attributes:
    matrices: the softmax temperature and the initialisation (N(0, 1) or ``"zeros"``).
    num_elements: ``G``.
    kernel_size: ``k`` (``d = k²``).
  """

  matrices: LearnedMatrices
  num_elements: int
  kernel_size: int
  powers_of_one_generator: ClassVar[bool] = True
  variable_names: ClassVar[tuple[str, ...]] = ("logits",)

  @property
  def size(self) -> int:
    """``d = k²``."""
    return self.kernel_size ** 2

  @property
  def candidates(self) -> tuple[int, ...]:
    """Indices into ``ops.groups.spatial_permutations("D4", k)`` of the candidate generators."""
    return structure_ops.distinct_cyclic_generators(self.kernel_size, self.num_elements)

  def create(self, key: jax.Array, **sources) -> dict:
    """``{"logits": RepresentationLogits [1, C] or None}``."""
    del sources
    count = _generator_count(self.matrices, self.num_elements)
    return {"logits": self.matrices.create(key, count, self.size, spatial=True,
                                           num_blend_weights=len(self.candidates))}

  def stack(self, variables: Variables) -> jnp.ndarray:
    """``[G, k², k²]``."""
    logits = variables["logits"]
    if logits is None:
      return self.matrices.with_identity(None, self.size)
    learned = stack_ops.power_blend(logits[...][0].astype(jnp.float32), self.kernel_size,
                                    self.num_elements, self.candidates,
                                    self.matrices.sinkhorn_tau)
    return self.matrices.with_identity(learned, self.size)

  def owned_matrices(self, variables: Variables) -> list:
    """The generator's blend ``Σ_j w_j P_j`` ``[1, k², k²]`` with the weights' logits."""
    logits = variables["logits"]
    return [] if logits is None else [(logits, self.stack(variables)[1:2])]

  def spatial_matrices(self, variables: Variables) -> Optional[jnp.ndarray]:
    """The whole stack."""
    return None if variables["logits"] is None else self.stack(variables)
