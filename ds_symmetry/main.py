"""Command line: ``python -m ds_symmetry.main --config=configs/default.py --workdir=DIR``.

Variants and overrides: ``--config=configs/rotated_mnist.py:gcnn --config.num_epochs=5``.
Rerunning with the same ``--workdir`` resumes from its latest checkpoint. This file is kept
short on purpose; the work happens in ``ds_symmetry.train.train_and_evaluate``.

Errors a user can act on (a bad flag, config or workdir, a full disk, a diverged run) end the
program with one ``error: ...`` line on stderr and exit status 1 (2 for bad flags); the
traceback is logged at debug level (``--verbosity=1``).
"""

import sys

import ds_symmetry  # noqa: F401  (fast CPU convolution flag, before jax starts)

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from ds_symmetry.train import train_and_evaluate
from ds_symmetry.train.trainer import TrainingDivergedError, initialize_distributed

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and figures.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                lock_config=True)

# Failures that are the user's to fix: reported in one line, not as a traceback.
USER_ERRORS = (ValueError, OSError, TrainingDivergedError)


def one_line(error: BaseException) -> str:
  """The error's message on one line (a ``KeyError``'s quoting and escaped newlines undone)."""
  text = str(error)
  if isinstance(error, (KeyError, AttributeError)):
    text = text.strip("'\"").replace("\\n", " ").replace("\\'", "'")
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return " ".join(lines[:3]) if lines else type(error).__name__


def _fail(message: str, status: int) -> None:
  logging.debug("full error", exc_info=True)
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(status)


def _quiet_closed_event_loop_errors() -> None:
  """After a failed checkpoint write (e.g. a full disk), the storage library's pending callbacks
  find Orbax's event loop closed and print one traceback each (as "unraisable" exceptions);
  the failure itself is reported once by :func:`main`, so those go to the debug log."""
  previous = sys.unraisablehook

  def hook(unraisable):
    value = unraisable.exc_value
    if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
      logging.debug("a storage callback found its event loop closed",
                    exc_info=(unraisable.exc_type, value, unraisable.exc_traceback))
      return
    previous(unraisable)

  sys.unraisablehook = hook


def parse_flags(argv):
  """absl's flag parsing, with a config override error (e.g. a misspelt field) in one line."""
  try:
    return FLAGS(argv)
  except flags.Error:
    raise  # absl prints these itself, briefly
  except (KeyError, AttributeError, TypeError, ValueError) as error:
    _fail(f"bad --config override: {one_line(error)} (the fields are listed in "
          f"ds_symmetry/train/config.py)", 2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  _quiet_closed_event_loop_errors()
  try:
    # Before anything asks JAX about devices: jax.distributed.initialize must come first.
    initialize_distributed(FLAGS.config)
    logging.info("JAX process %d/%d, local devices: %s", jax.process_index(),
                 jax.process_count(), jax.local_devices())
    train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except USER_ERRORS as error:
    _fail(one_line(error), 1)
  from ds_symmetry import report  # pylint: disable=import-outside-toplevel
  if jax.process_index() == 0:
    print(report.format_report(FLAGS.workdir), flush=True)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main, flags_parser=parse_flags)
