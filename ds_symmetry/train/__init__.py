"""The trainer: optimizer, jitted train/eval steps, checkpoints, metrics, data parallelism.

``train_and_evaluate(config, workdir)`` is the library entry point (``ds_symmetry.main`` is
its thin command line). ``base_config()`` / ``validate_config()`` define the config fields;
``load_model(workdir)`` rebuilds a run's model from its config and newest checkpoint. The
files a run writes are named, written and read by ``ds_symmetry.run_files``.
"""

from ds_symmetry.train.config import base_config, cifar_config, validate_config
from ds_symmetry.train.restore import load_model
from ds_symmetry.train.trainer import (TrainingDivergedError, epoch_order, initialize_distributed,
                                       make_mesh, train_and_evaluate)

__all__ = ["TrainingDivergedError", "base_config", "cifar_config", "epoch_order",
           "initialize_distributed", "load_model", "make_mesh", "train_and_evaluate",
           "validate_config"]
