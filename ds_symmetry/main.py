"""Command line: ``python -m ds_symmetry.main --config=configs/default.py --workdir=DIR``.

Variants and overrides: ``--config=configs/rotated_mnist.py:gcnn --config.num_epochs=5``.
Rerunning with the same ``--workdir`` resumes from its latest checkpoint. This file is kept
short on purpose; the work happens in ``ds_symmetry.train.train_and_evaluate``.
"""

import ds_symmetry  # noqa: F401  (fast CPU convolution flag, before jax starts)

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from ds_symmetry.train import train_and_evaluate

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and figures.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  logging.info("JAX process %d/%d, local devices: %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  train_and_evaluate(FLAGS.config, FLAGS.workdir)
  from ds_symmetry import report  # pylint: disable=import-outside-toplevel
  if jax.process_index() == 0:
    print(report.format_report(FLAGS.workdir), flush=True)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
