"""Command line: ``python -m ds_symmetry.main --config=configs/default.py --workdir=DIR``.

Variants and overrides: ``--config=configs/rotated_mnist.py:gcnn --config.num_epochs=5``;
``--config.protocol_options.flip_probability=0.5`` sets any option of the protocol, whether or
not the config file names it (an unknown name is one line listing the accepted ones, exit 2).
Rerunning with the same ``--workdir`` resumes from its latest checkpoint. This file is kept
short on purpose; the work happens in ``ds_symmetry.train.train_and_evaluate``.

Errors a user can act on end the program with one ``error: ...`` line on stderr and no
traceback (logged at debug level, ``--verbosity=1``): exit status 2 for a bad argument (a
missing flag, a config file that does not exist or fails, a value of the wrong type, a
misspelt or invalid config field, a field renamed since (``--config.model_options.sharing``,
``--config.discover_when_within`` and the other top-level discovery fields, now
``--config.discovery.*``: the line names the new fields), images that do not fit the model,
a ``--workdir`` that is not a run), 1 for the rest (a workdir in use or holding another config, a full disk, a
diverged run).
"""

import os
import re
import sys

import ds_symmetry  # noqa: F401  (fast CPU convolution flag, before jax starts)

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from ds_symmetry.run_files import NotARunError
from ds_symmetry.train import train_and_evaluate, validate_config
from ds_symmetry.train.config import ImagesDoNotFitError, renamed_field, set_protocol_options
from ds_symmetry.train.trainer import TrainingDivergedError, initialize_distributed

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and figures: new, "
                    "empty, or a run of this library to resume.")
flags.DEFINE_bool("adopt_workdir", False, "Train in --workdir even though it is a non-empty "
                  "directory that is not a run of this library (files named like a run's are "
                  "replaced there).")
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


def _innermost(text: str) -> str:
  """The last ``SomeError: message`` line of a text that embeds tracebacks (absl's flag errors
  wrap a config file's exception with its traceback), else its first line."""
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
  if errors:
    return errors[-1].split(": ", 1)[1]
  return lines[0] if lines else text


def _flag_error(error: flags.Error) -> str:
  """One line for absl's flag errors: the flag, the value and what was expected."""
  text = str(error)
  required = re.match(r"flag --(\w+)=None: Flag --\w+ must have a value other than None", text)
  if required:
    example = {"workdir": "--workdir=runs/default", "config": "--config=configs/default.py"}
    return (f"--{required.group(1)} is required (e.g. "
            f"{example.get(required.group(1), '--' + required.group(1) + '=...')})")
  head = re.match(r"flag (--[\w.]+)=(.*?): (.*)", text, re.S)
  if head:
    flag, value, detail = head.groups()
    if flag.startswith("--config.") and ("invalid literal" in detail
                                         or "could not convert" in detail):
      kind = re.search(r"for (\w+)\(\)|string to (\w+)", detail)
      name = (kind.group(1) or kind.group(2)) if kind else "value of the field's type"
      expected = f"expected a{'n' if name[0] in 'aeiou' else ''} {name}"
      return f"{flag}: {value!r} is not accepted; {expected}"
    return f"{flag}: {value!r} is not accepted: {_innermost(detail)}"
  return _innermost(text)


def _check_config_file(argv) -> None:
  """A ``--config`` file that does not exist: one line, before absl tries to load it."""
  for arg in argv[1:]:
    match = re.match(r"--config=(.*)", arg)
    if match:
      file = match.group(1).split(":", 1)[0]
      if file and not os.path.isfile(file):
        _fail(f"--config: {file!r} is not accepted; expected an existing config file, e.g. "
              f"configs/default.py or configs/rotated_mnist.py:gcnn (see configs/)", 2)


_PROTOCOL_OPTION = re.compile(r"--config\.protocol_options\.(\w+)(?:=(.*))?$", re.S)


def split_protocol_options(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """``(argv without them, [(key, value)])`` of the ``--config.protocol_options.KEY=VALUE``
  (or ``... KEY VALUE``) arguments. absl can only override a field the config file already
  has; a protocol's options are set after parsing instead, whether or not the file names them
  (``train.config.set_protocol_options``)."""
  rest, options = list(argv[:1]), []
  index = 1
  while index < len(argv):
    match = _PROTOCOL_OPTION.match(argv[index])
    if argv[index] == "--":
      rest += argv[index:]
      break
    if match is None:
      rest.append(argv[index])
    else:
      key, value = match.groups()
      if value is None:
        if index + 1 >= len(argv) or argv[index + 1].startswith("--"):
          _fail(f"{argv[index]}: needs a value (e.g. {argv[index]}=0.5)", 2)
        index += 1
        value = argv[index]
      options.append((key, value))
    index += 1
  return rest, options


def parse_flags(argv):
  """absl's flag parsing, with every flag or config error (a missing flag, a config file that
  does not exist or fails, a value of the wrong type, a misspelt field) in one line, exit 2.
  ``--config.protocol_options.KEY=VALUE`` sets any option the protocol accepts."""
  _check_config_file(argv)
  for arg in argv[1:]:
    renamed = renamed_field(arg)
    if renamed:
      _fail(renamed, 2)
  argv, protocol_options = split_protocol_options(argv)
  try:
    # ml_collections reads --config.* overrides from sys.argv itself: hide the options there.
    original, sys.argv = sys.argv, argv
    try:
      rest = FLAGS(argv)
    finally:
      sys.argv = original
    if FLAGS.config is None:
      raise flags.IllegalFlagValueError(
          "flag --config=None: Flag --config must have a value other than None.")
    try:
      set_protocol_options(FLAGS.config, protocol_options)
    except ValueError as error:
      _fail(one_line(error), 2)
    return rest
  except flags.Error as error:
    _fail(_flag_error(error), 2)
  except (KeyError, AttributeError, TypeError, ValueError) as error:
    _fail(f"bad --config override: {one_line(error)} (the fields are listed in "
          f"ds_symmetry/train/config.py)", 2)
  return None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  _quiet_closed_event_loop_errors()
  try:
    # Before anything asks JAX about devices: jax.distributed.initialize must come first.
    initialize_distributed(FLAGS.config)
    logging.info("JAX process %d/%d, local devices: %s", jax.process_index(),
                 jax.process_count(), jax.local_devices())
    validate_config(FLAGS.config)
  except ValueError as error:
    _fail(one_line(error), 2)
  try:
    train_and_evaluate(FLAGS.config, FLAGS.workdir, adopt_workdir=FLAGS.adopt_workdir)
  except (NotARunError, ImagesDoNotFitError) as error:  # a bad --workdir or config argument
    _fail(one_line(error), 2)
  except USER_ERRORS as error:
    _fail(one_line(error), 1)
  from ds_symmetry import report  # pylint: disable=import-outside-toplevel
  if jax.process_index() == 0:
    print(report.format_report(FLAGS.workdir), flush=True)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main, flags_parser=parse_flags)
