"""The trainer: optimizer, jitted train/eval steps, checkpoints, metrics, data parallelism.

``train_and_evaluate(config, workdir)`` is the library entry point (``ds_symmetry.main`` is
its thin command line). ``base_config()`` / ``validate_config()`` define the config fields.
"""

from ds_symmetry.train.config import base_config, cifar_config, validate_config
from ds_symmetry.train.trainer import (STACKS_FILE, TrainingDivergedError, epoch_order,
                                       initialize_distributed, make_mesh, train_and_evaluate)

__all__ = ["STACKS_FILE", "TrainingDivergedError", "base_config", "cifar_config", "epoch_order",
           "initialize_distributed", "make_mesh", "train_and_evaluate", "validate_config"]
