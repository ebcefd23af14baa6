"""The layers' stack options (``elements``, ``sharing``) → a stack parameterisation.

The only place that knows which option value names which parameterisation: a new
parameterisation is a module in this package plus one entry here; no layer changes.
"""

from __future__ import annotations

from ds_symmetry.nn.stacks.base import LearnedMatrices, StackParameterisation
from ds_symmetry.nn.stacks.independent import IndependentElements
from ds_symmetry.nn.stacks.kronecker import KroneckerFactors
from ds_symmetry.nn.stacks.powers import GeneratorPowers, PowerBlend
from ds_symmetry.nn.stacks.tied import TiedCayleyFactors, TiedCyclicFactors, TiedFactors

# How a lifting stack's elements relate (``WSLiftConv``): each learned on its own, or every
# element a power of one learned generator, or (isometry blends only) the blend of the powers
# of the grid's isometries with one learned set of weights.
ELEMENTS = ("independent", "powers", "power_blend")
# How a group convolution's stack is structured (``WSGroupConv``).
SHARINGS = ("full", "kronecker", "tied", "tied_shared", "tied_cayley", "tied_cyclic")


def check_lift_options(elements: str, fix_identity: bool, constraint: str) -> None:
  """Raises ``ValueError`` naming the argument for a lifting layer's ``elements`` that is
  unknown or does not fit ``fix_identity`` / ``constraint``."""
  if elements not in ELEMENTS:
    raise ValueError(f"elements must be one of {ELEMENTS}; got {elements!r}")
  if elements != "independent" and not fix_identity:
    raise ValueError(f"elements={elements!r} needs fix_identity=True (element 0 is the "
                     f"identity); got fix_identity=False")
  if elements == "power_blend" and constraint != "isometries":
    raise ValueError(f"elements='power_blend' blends powers of the grid's isometries and needs "
                     f"constraint='isometries'; got constraint={constraint!r}")


def check_group_options(sharing: str, cayley_temperature: float) -> None:
  """Raises ``ValueError`` naming the argument for an unknown ``sharing`` or a
  ``cayley_temperature`` that is not > 0."""
  if sharing not in SHARINGS:
    raise ValueError(f"sharing must be one of {SHARINGS}; got {sharing!r}")
  if not cayley_temperature > 0:
    raise ValueError(f"cayley_temperature must be > 0; got {cayley_temperature!r}")


def lift_stack(elements: str, matrices: LearnedMatrices, num_elements: int, kernel_size: int,
               spatial_dims: int) -> StackParameterisation:
  """The learned stack ``[G, k^D, k^D]`` of a lifting layer with ``elements`` (checked by
  :func:`check_lift_options`)."""
  size = kernel_size ** spatial_dims
  if elements == "power_blend":
    return PowerBlend(matrices, num_elements, kernel_size)
  if elements == "powers":
    return GeneratorPowers(matrices, num_elements, size, spatial_dims)
  return IndependentElements(matrices, num_elements, size, spatial=True,
                             spatial_dims=spatial_dims)


def group_stack(sharing: str, matrices: LearnedMatrices, num_elements: int, kernel_size: int,
                spatial_dims: int, cayley_temperature: float) -> StackParameterisation:
  """The learned stack ``[G, G·k^D, G·k^D]`` of a group convolution with ``sharing`` (checked
  by :func:`check_group_options`); every factorised one needs a 2-D grid."""
  if sharing == "full":
    return IndependentElements(matrices, num_elements, num_elements * kernel_size ** spatial_dims,
                               spatial=False, spatial_dims=spatial_dims)
  if spatial_dims != 2:
    raise ValueError(f"sharing={sharing!r} needs a 2-D kernel grid; got "
                     f"spatial_dims={spatial_dims} (use sharing='full')")
  if sharing == "kronecker":
    return KroneckerFactors(matrices, num_elements, kernel_size)
  if sharing == "tied_cayley":
    return TiedCayleyFactors(matrices, num_elements, kernel_size, cayley_temperature)
  if sharing == "tied_cyclic":
    return TiedCyclicFactors(matrices, num_elements, kernel_size)
  return TiedFactors(matrices, num_elements, kernel_size, shared=sharing == "tied_shared")
