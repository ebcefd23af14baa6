"""Independent elements: every learned element has its own free matrix (the paper)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp

from ds_symmetry.nn.stacks.base import LearnedMatrices, StackParameterisation, Variables


@dataclasses.dataclass(frozen=True)
class IndependentElements(StackParameterisation):
  """``R = [I, M_1, …, M_{G−1}]`` (or ``[M_0, …]`` without the fixed identity), each ``M_i``
  made by ``matrices`` from its own free parameters: logits ``[G−1, d, d]`` in the layer's
  ``logits``, or isometry blend weights ``[G−1, 8]`` for a spatial stack under
  ``constraint="isometries"``.

  Attributes:
    matrices: how the learned matrices are made.
    num_elements: ``G``.
    size: ``d`` (``k^D`` for a lifting stack, ``G·k^D`` for a group convolution's).
    spatial: whether the matrices act on the kernel grid (a lifting stack): then they may be
      isometry blends, and on a 2-D grid the isometry prior applies to the stack.
    spatial_dims: the kernel grid's rank ``D``.
  """

  matrices: LearnedMatrices
  num_elements: int
  size: int
  spatial: bool = False
  spatial_dims: int = 2
  variable_names: ClassVar[tuple[str, ...]] = ("logits",)

  def create(self, key: jax.Array, **sources) -> dict:
    """``{"logits": RepresentationLogits or None}`` (``None``: no learned element)."""
    del sources
    count = self.matrices.learned_count(self.num_elements)
    return {"logits": self.matrices.create(key, count, self.size, spatial=self.spatial)}

  def stack(self, variables: Variables) -> jnp.ndarray:
    """``[G, d, d]``."""
    logits = variables["logits"]
    learned = None if logits is None else self.matrices.constrain(logits[...])
    return self.matrices.with_identity(learned, self.size)

  def owned_matrices(self, variables: Variables) -> list:
    """The learned elements ``[G−1, d, d]`` with their logits."""
    logits = variables["logits"]
    return [] if logits is None else [(logits, self.matrices.constrain(logits[...]))]

  def spatial_matrices(self, variables: Variables) -> Optional[jnp.ndarray]:
    """The whole stack of a spatial (lifting) stack on a 2-D grid, else ``None``."""
    if not self.spatial or self.spatial_dims != 2 or variables["logits"] is None:
      return None
    return self.stack(variables)
