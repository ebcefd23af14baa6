"""The layers' stack options (``elements``; ``factorise``, ``tie``) → a stack parameterisation.

The only place that knows which option value names which parameterisation: a new
parameterisation is a module in this package plus one entry here; no layer changes.

Layers, models and configs name a group convolution's stack by two orthogonal options
(``factorise``: what the stack is a product of; ``tie``: what its factors are tied to).
:data:`STRUCTURES` maps each name the group layer had for a pair before (``sharing``, one name
for both; still in recorded configs and the study's row names) to its pair, and
:func:`renamed_sharing` says which pair to use. :data:`EXPERIMENTAL_OPTIONS` lists the choices
the study saw fail (kept, and warned about by the config validator).
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
# What a group convolution's stack ``R_g`` is factorised into (``factorise``): nothing (one
# free ``[G·k², G·k²]`` matrix per element, the paper), or the Kronecker product
# ``R_g = A_g ⊗ B_g`` of a group factor ``A [G, G, G]`` and a spatial factor ``B [G, k², k²]``.
FACTORISATIONS = ("none", "kronecker")
# What a Kronecker-factorised stack's factors are tied to (``tie``): nothing (the layer's own
# ``A`` and ``B``); or ``B`` is the lifting layer's stack (one spatial action for the network)
# and ``A`` is the layer's own (``"spatial"``), one ``A`` shared by every group layer
# (``"shared"``), derived from how ``B``'s elements compose (``"cayley"``, no parameters), or
# the cyclic shifts of a lifting stack of powers (``"cyclic"``, no parameters).
TIES = ("none", "spatial", "shared", "cayley", "cyclic")
# The one name a group layer's stack structure had before (``sharing``: recorded configs, the
# study's rows) → its ``(factorise, tie)``: one pair each. ``WSGroupConv(sharing=...)`` and
# ``create_model(sharing=...)`` are refused with the pair (:func:`renamed_sharing`).
STRUCTURES = {"full": ("none", "none"), "kronecker": ("kronecker", "none"),
              "tied": ("kronecker", "spatial"), "tied_shared": ("kronecker", "shared"),
              "tied_cayley": ("kronecker", "cayley"), "tied_cyclic": ("kronecker", "cyclic")}
# The old names, in :data:`STRUCTURES`' order.
SHARINGS = tuple(STRUCTURES)
# Lifting-layer ``elements`` whose stack is the powers of one generator (``tie="cyclic"``).
POWER_ELEMENTS = ("powers", "power_blend")

# What the study (docs/learning_the_group.md) ran and saw fail to learn a group. Kept so its
# grids stay reproducible, and allowed, but experimental: the config validator logs one warning
# line naming them. Each: what the study found, and the commit that recorded its runs
# (docs/guide/stacks.md, "Experimental options").
EXPERIMENTAL_OPTIONS = {
    "tie='spatial'": "no group in 2 epochs (same_budget row tied, ff86c5e)",
    "tie='shared'": "no group in 2 epochs (same_budget row tied_shared, 9688215)",
    "tie='cayley' with elements='independent'": (
        "no group: independent elements sharpen onto one transformation (same_budget row "
        "tied_cayley, 514207f; settings search, 4f3fe80)"),
    "elements='powers'": ("C4 in 4 of 7 runs at 16 channels, in none of 5 at 32 (a reflection "
                          "or the identity; settings search pwz32_*, ea9dbad); "
                          "elements='power_blend' replaces it"),
    "constraint='softmax'": "no group (same_budget row ablation_softmax, 3ca449b)",
    "constraint='none'": "no group, diverging powers (same_budget row ablation_none, d58095c)",
    "isometry_weight > 0": ("no group (same_budget row tied_cayley_iso, 3042a70; settings "
                            "search tc_iso*, 4f3fe80)"),
}


def experimental_choices(options: dict, isometry_weight: float = 0.0) -> list[str]:
  """The :data:`EXPERIMENTAL_OPTIONS` that a learned model's ``options`` (``create_model``'s,
  defaults where absent) and a config's ``isometry_weight`` choose, in that dict's order."""
  tie = options.get("tie", "none")
  elements = options.get("elements", "independent")
  chosen = {f"tie={tie!r}", f"elements={elements!r}",
            f"constraint={options.get('constraint', 'sinkhorn')!r}"}
  if tie == "cayley" and elements == "independent":
    chosen.add("tie='cayley' with elements='independent'")
  if isometry_weight > 0:
    chosen.add("isometry_weight > 0")
  return [name for name in EXPERIMENTAL_OPTIONS if name in chosen]


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


def check_group_options(factorise: str, tie: str, cayley_temperature: float) -> None:
  """Raises ``ValueError`` naming the argument for an unknown ``factorise`` or ``tie``, a
  ``tie`` without Kronecker factors (:func:`check_structure`) or a ``cayley_temperature`` that
  is not > 0."""
  check_structure(factorise, tie)
  if not cayley_temperature > 0:
    raise ValueError(f"cayley_temperature must be > 0; got {cayley_temperature!r}")


def check_structure(factorise: str, tie: str) -> None:
  """Raises ``ValueError`` naming the option for an unknown ``factorise`` or ``tie``, or a
  ``tie`` without Kronecker factors to tie."""
  if factorise not in FACTORISATIONS:
    raise ValueError(f"factorise must be one of {FACTORISATIONS}; got {factorise!r}")
  if tie not in TIES:
    raise ValueError(f"tie must be one of {TIES}; got {tie!r}")
  if tie != "none" and factorise != "kronecker":
    raise ValueError(f"tie={tie!r} ties the Kronecker factors of a group layer's stack and "
                     f"needs factorise='kronecker'; got factorise={factorise!r}")


def renamed_sharing(sharing) -> str:
  """The one-line refusal of a ``sharing=`` argument (the old single name of a group layer's
  stack structure), naming the ``factorise`` / ``tie`` pair to pass instead."""
  pair = STRUCTURES.get(sharing) if isinstance(sharing, str) else None
  if pair is None:
    return (f"sharing={sharing!r} is no longer an option: a group layer's stack is named by "
            f"factorise (one of {FACTORISATIONS}) and tie (one of {TIES}); each old sharing "
            f"value's pair is in nn.stacks.STRUCTURES")
  return (f"sharing={sharing!r} is no longer an option: pass factorise={pair[0]!r}, "
          f"tie={pair[1]!r} instead (nn.stacks.STRUCTURES)")


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


def group_stack(factorise: str, tie: str, matrices: LearnedMatrices, num_elements: int,
                kernel_size: int, spatial_dims: int,
                cayley_temperature: float) -> StackParameterisation:
  """The learned stack ``[G, G·k^D, G·k^D]`` of a group convolution with ``factorise`` and
  ``tie`` (checked by :func:`check_group_options`); every factorised one needs a 2-D grid."""
  if factorise == "none":
    return IndependentElements(matrices, num_elements, num_elements * kernel_size ** spatial_dims,
                               spatial=False, spatial_dims=spatial_dims)
  if spatial_dims != 2:
    raise ValueError(f"factorise={factorise!r} needs a 2-D kernel grid; got "
                     f"spatial_dims={spatial_dims} (use factorise='none')")
  if tie == "none":
    return KroneckerFactors(matrices, num_elements, kernel_size)
  if tie == "cayley":
    return TiedCayleyFactors(matrices, num_elements, kernel_size, cayley_temperature)
  if tie == "cyclic":
    return TiedCyclicFactors(matrices, num_elements, kernel_size)
  return TiedFactors(matrices, num_elements, kernel_size, shared=tie == "shared")
