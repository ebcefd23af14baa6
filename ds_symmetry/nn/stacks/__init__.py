"""Representation-stack parameterisations: how a weight-sharing layer's stack is made.

A layer (``WSLiftConv``, ``WSGroupConv``) does not know how its stack ``[G, d, d]`` is
produced. It holds one :class:`StackParameterisation` (``layer.parameterisation``) and asks it
for the stack and its regularisers; the parameterisation's variables (``logits``,
``group_logits``, ``spatial_logits``, ``spatial_source``, ``fixed_stack``) live on the layer
under those names. The interface:

* ``create(key, **sources) -> {name: variable}``: the variables of a new layer;
* ``stack(variables) -> [G, d, d]``;
* ``factors(variables) -> (A [G, G, G], B [G, k², k²])`` when ``factorised``;
* ``regularizers(variables) -> {"norm", "entropy", "isometry"}`` and
  ``marginal_error(variables)``, from ``owned_matrices`` / ``spatial_matrices``;
* class attributes ``learned``, ``factorised``, ``powers_of_one_generator``,
  ``variable_names``.

Parameterisations: :class:`IndependentElements` (free elements, the paper),
:class:`GeneratorPowers` and :class:`PowerBlend` (powers of one generator),
:class:`KroneckerFactors` (own factors), :class:`TiedFactors`, :class:`TiedCayleyFactors` and
:class:`TiedCyclicFactors` (factors tied to the lifting layer), :class:`ExactGroup` (the G-CNN)
and :class:`FrozenStack` (a stack frozen after learning). How learned matrices are made from
free parameters (Sinkhorn, row softmax, unconstrained, isometry blends) is
:class:`LearnedMatrices`. ``options`` maps the layers' ``elements`` and the group layers'
``factorise`` / ``tie`` to parameterisations (:data:`STRUCTURES`: each old single ``sharing``
name's pair).
"""

from ds_symmetry.nn.stacks.base import (CONSTRAINTS, FixedStack, LearnedMatrices,
                                        RepresentationLogits, StackParameterisation)
from ds_symmetry.nn.stacks.fixed import ExactGroup, FrozenStack
from ds_symmetry.nn.stacks.independent import IndependentElements
from ds_symmetry.nn.stacks.kronecker import KroneckerFactors
from ds_symmetry.nn.stacks.options import (ELEMENTS, EXPERIMENTAL_OPTIONS, FACTORISATIONS,
                                           SHARINGS, STRUCTURES, TIES, check_group_options,
                                           check_lift_options, check_structure,
                                           experimental_choices, group_stack, lift_stack,
                                           renamed_sharing)
from ds_symmetry.nn.stacks.powers import GeneratorPowers, PowerBlend
from ds_symmetry.nn.stacks.tied import TiedCayleyFactors, TiedCyclicFactors, TiedFactors

__all__ = [
    "CONSTRAINTS", "ELEMENTS", "EXPERIMENTAL_OPTIONS", "FACTORISATIONS", "SHARINGS",
    "STRUCTURES", "TIES",
    "ExactGroup", "FixedStack", "FrozenStack", "GeneratorPowers", "IndependentElements", "KroneckerFactors", "LearnedMatrices",
    "PowerBlend", "RepresentationLogits", "StackParameterisation", "TiedCayleyFactors",
    "TiedCyclicFactors", "TiedFactors", "check_group_options", "check_lift_options",
    "check_structure", "experimental_choices", "group_stack", "lift_stack",
    "renamed_sharing",
]
