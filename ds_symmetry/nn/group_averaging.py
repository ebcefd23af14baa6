"""A classifier made exactly invariant to a subgroup of ``D4`` by averaging over its elements.

:class:`GroupAveraged` wraps any image classifier ``f`` (the *backbone*) and a subgroup ``H``
of the square grid's isometries (``ops.D4_SUBGROUPS``):

    y_H(x) = (1/|H|) Σ_{h∈H} f(h·x)                           logits [B, K].

``y_H(g·x) = y_H(x)`` for every ``g ∈ H`` (the sum runs over ``H·g = H``), for any backbone
and any weights. It is the readout :class:`~ds_symmetry.nn.SubgroupSelector` scores each
candidate with, kept as a model of its own: ``discovery.discover_gcnn(selector,
keep_backbone=True)`` turns a committed selector into ``GroupAveraged(selector.backbone,
answer)``, so training goes on with the backbone the identification already trained, now
exactly invariant to the answer (the trainer's ``config.discovery.keep_backbone``).

Cost: ``|H|`` backbone passes per image (one batched call of ``|H|·B`` images). A backbone with
batch normalisation takes its statistics over the ``|H|·B`` transformed copies.

Shapes: input ``[B, H, W, C]`` (square images) → logits ``[B, K]`` float32.
"""

from __future__ import annotations

from flax import nnx

from ds_symmetry.nn.subgroup_selection import element_logits
from ds_symmetry.ops import groups as groups_ops


class GroupAveraged(nnx.Module):
  """``y_H(x) = mean_{h∈H} backbone(h·x)``: exactly invariant to the subgroup ``H``.

  Args:
    backbone: an NNX module mapping ``[B, H, W, C]`` → logits ``[B, K]``.
    group: a subgroup of ``D4`` by name (one of ``ops.D4_SUBGROUPS``; ``"trivial"`` gives the
      backbone itself).
  """

  def __init__(self, backbone: nnx.Module, group: str):
    if group not in groups_ops.D4_SUBGROUPS:
      raise ValueError(f"group: {group!r} is not accepted; expected one of "
                       f"{list(groups_ops.D4_SUBGROUPS)}")
    self.backbone = backbone
    self.group = group
    self.elements = tuple(groups_ops.d4_elements(group))  # D4 element indices, [|H|]

  def __call__(self, x):
    """``[B, H, W, C]`` → ``[B, K]`` float32, the mean of the backbone's logits over ``H``."""
    return element_logits(self.backbone, x, self.elements).mean(axis=0)
