"""Stacks without learned parameters: an exact group (the G-CNN) and a frozen stack."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from ds_symmetry.nn.stacks.base import FixedStack, StackParameterisation, Variables
from ds_symmetry.ops import groups as groups_ops


@dataclasses.dataclass(frozen=True)
class ExactGroup(StackParameterisation):
  """The exact permutation representation of ``group`` on the kernel: a lifting stack
  ``[G, k^D, k^D]`` (``ops.groups.spatial_permutations``) or a group convolution's shift-twist
  stack ``[G, G·k^D, G·k^D]`` (``ops.groups.shift_twist_permutations``). With it the
  weight-sharing layer *is* the G-CNN layer. No variables; building one raises
  ``ValueError`` if the group does not act on the ``k^D`` grid.

  Attributes:
    group: a name from ``ops.groups.group_names()``.
    kernel_size: ``k``.
    acts_on_elements: ``False`` for a lifting stack, ``True`` for a group convolution's.
  """

  group: str
  kernel_size: int
  acts_on_elements: bool = False
  learned: ClassVar[bool] = False

  def __post_init__(self):
    self.stack({})  # raises ValueError now if the group does not act on this grid

  @property
  def num_elements(self) -> int:
    """``G``, the group's order."""
    return groups_ops.group_order(self.group)

  @property
  def size(self) -> int:
    """``d``."""
    spatial = self.kernel_size ** groups_ops.group_spatial_dims(self.group)
    return self.num_elements * spatial if self.acts_on_elements else spatial

  def create(self, key: jax.Array, **sources) -> dict:
    """No variables."""
    del key, sources
    return {}

  def stack(self, variables: Variables) -> jnp.ndarray:
    """The exact permutations ``[G, d, d]``."""
    del variables
    if self.acts_on_elements:
      return groups_ops.shift_twist_permutations(self.group, self.kernel_size)
    return groups_ops.spatial_permutations(self.group, self.kernel_size)


@dataclasses.dataclass(frozen=True)
class FrozenStack(StackParameterisation):
  """A frozen ``[G, d, d]`` stack in the layer's ``fixed_stack`` (a :class:`FixedStack`, not a
  parameter): e.g. the exact stack of the G-CNN a learned network was rounded to.

  Attributes:
    num_elements: ``G``.
    size: ``d``.
  """

  num_elements: int
  size: int
  learned: ClassVar[bool] = False
  variable_names: ClassVar[tuple[str, ...]] = ("fixed_stack",)

  def create(self, key: jax.Array = None, stack=None, **sources) -> dict:
    """``{"fixed_stack": FixedStack(stack)}`` for ``stack [G, d, d]``."""
    del key, sources
    stack = jnp.asarray(stack, jnp.float32)
    if stack.shape != (self.num_elements, self.size, self.size):
      raise ValueError(f"stack must have shape {(self.num_elements, self.size, self.size)} for "
                       f"this layer; got {tuple(stack.shape)}")
    return {"fixed_stack": FixedStack(stack)}

  def stack(self, variables: Variables) -> jnp.ndarray:
    """The frozen stack ``[G, d, d]``."""
    return variables["fixed_stack"][...]
