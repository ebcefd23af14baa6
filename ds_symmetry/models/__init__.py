"""The paper's models and the interface the trainer uses (see ``ds_symmetry.nn.introspection``)."""

from ds_symmetry.models.expansion import gcnn_from_cnn, jointly_normalised_average
from ds_symmetry.models.factory import MODEL_NAMES, create_model
from ds_symmetry.models.networks import ConvNet, ResNet, ResidualBlock
from ds_symmetry.nn.introspection import (StackInfo, count_parameters, max_marginal_error,
                                          regularizer_terms, representation_stacks,
                                          weight_sharing_layers)
from ds_symmetry.nn.weight_sharing import RepresentationLogits
