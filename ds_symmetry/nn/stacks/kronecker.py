"""Kronecker-factorised group-convolution stacks with the layer's own factors."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp

from ds_symmetry.nn.stacks.base import LearnedMatrices, StackParameterisation, Variables
from ds_symmetry.ops import stacks as stack_ops


@dataclasses.dataclass(frozen=True)
class KroneckerFactors(StackParameterisation):
  """``R_g = A_g ⊗ B_g`` with the layer's own ``A [G, G, G]`` (input-element axis; logits
  ``[G−1, G, G]`` in ``group_logits``) and ``B [G, k², k²]`` (kernel plane; logits
  ``[G−1, k², k²]`` or isometry blend weights ``[G−1, 8]`` in ``spatial_logits``), each with
  the fixed identity first. Layers build the kernel from the factors.

  Attributes:
    matrices: how both factors' learned matrices are made.
    num_elements: ``G``.
    kernel_size: ``k`` (``d = G·k²``).
  """

  matrices: LearnedMatrices
  num_elements: int
  kernel_size: int
  factorised: ClassVar[bool] = True
  variable_names: ClassVar[tuple[str, ...]] = ("group_logits", "spatial_logits")

  @property
  def size(self) -> int:
    """``d = G·k²``."""
    return self.num_elements * self.kernel_size ** 2

  def create(self, key: jax.Array, **sources) -> dict:
    """``{"group_logits": …, "spatial_logits": …}`` (``RepresentationLogits`` or ``None``)."""
    del sources
    group_key, spatial_key = jax.random.split(key)
    count, k = self.matrices.learned_count(self.num_elements), self.kernel_size
    spatial = self.matrices.create(spatial_key, count, k * k, spatial=True)
    group = self.matrices.create(group_key, count, self.num_elements)
    return {"spatial_logits": spatial, "group_logits": group}

  def _spatial(self, variables: Variables) -> jnp.ndarray:
    return self.matrices.with_identity(
        self.matrices.constrain(variables["spatial_logits"][...]), self.kernel_size ** 2)

  def factors(self, variables: Variables) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(A [G, G, G], B [G, k², k²])``."""
    spatial = self._spatial(variables)
    logits = variables["group_logits"]
    group = self.matrices.with_identity(
        None if logits is None else self.matrices.constrain(logits[...]), self.num_elements)
    return group, spatial

  def stack(self, variables: Variables) -> jnp.ndarray:
    """The materialised ``[G, G·k², G·k²]``."""
    return stack_ops.kronecker_stack(*self.factors(variables))

  def owned_matrices(self, variables: Variables) -> list:
    """``B``'s then ``A``'s learned matrices, with their logits."""
    owned = [variables["spatial_logits"], variables["group_logits"]]
    return [(free, self.matrices.constrain(free[...])) for free in owned if free is not None]

  def spatial_matrices(self, variables: Variables) -> Optional[jnp.ndarray]:
    """``B [G, k², k²]``."""
    return None if variables["spatial_logits"] is None else self._spatial(variables)
