"""Flax NNX modules: own parameters, call ``ds_symmetry.ops``."""

from ds_symmetry.nn.group_averaging import GroupAveraged
from ds_symmetry.nn.introspection import (REGULARIZERS, StackInfo, count_parameters,
                                          max_marginal_error, parameter_groups,
                                          regularizer_loss, regularizer_terms,
                                          representation_stacks, weight_sharing_layers)
from ds_symmetry.nn.plain import ChannelLinear, torch_conv, torch_linear
from ds_symmetry.nn.norms import ChannelBatchNorm, ChannelLayerNorm, GroupLayerNorm
from ds_symmetry.nn.pooling import GroupPool
from ds_symmetry.nn.subgroup_selection import SubgroupLogits, SubgroupSelector
from ds_symmetry.nn.weight_sharing import (LOGITS_INITS, RepresentationLogits, WSGroupConv,
                                           WSLiftConv)
