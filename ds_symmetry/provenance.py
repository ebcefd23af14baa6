"""Where a number came from: code version, packages, machine and the switches that change it.

:func:`collect` returns one JSON-ready dict that the trainer writes into every run's
``results.json`` under ``"provenance"``, so a result carries its own record instead of a
sentence in a README::

  {"git": {"commit": "1a2b…", "dirty": False},
   "packages": {"jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.1", "optax": "0.2.6"},
   "python": "3.11.9",
   "machine": {"system": "Linux", "cpu_model": "AMD EPYC", "cpu_flags": ["avx", "avx2", …]},
   "devices": {"backend": "cpu", "device_kind": "cpu", "device_count": 1,
               "local_device_count": 1, "process_count": 1},
   "switches": {"custom_gradients": True, "environment": {"XLA_FLAGS": "…", …},
                "jax_enable_x64": False, "jax_default_matmul_precision": None,
                "conv_path": {"forward": "xla", "input_grad": "xla", "weight_grad": "xla"}}}

Every part degrades to ``None`` instead of failing (no git, a non-Linux CPU, a package not
installed): provenance must never stop a run that has finished training.
"""

from __future__ import annotations

import os
import pathlib
import platform
import subprocess
from importlib import metadata
from typing import Any

PACKAGES = ("jax", "jaxlib", "flax", "optax")
"""Distributions whose versions change the numbers a run produces."""

ENVIRONMENT_PREFIXES = ("DS_SYMMETRY_", "JAX_")
"""Environment variables with these prefixes are recorded (with ``XLA_FLAGS``)."""

ENVIRONMENT_NAMES = ("XLA_FLAGS", "DS_SYMMETRY_CUSTOM_GRADIENTS")
"""Environment variables always listed, as ``None`` when unset."""

PATH_VARIABLES = ("DS_SYMMETRY_DATA", "DS_SYMMETRY_CACHE", "DS_SYMMETRY_REFERENCE_REPO")
"""Recorded variables that hold a location on the machine: recorded as ``"<set>"``, not their
path (which says nothing about the numbers and would put a machine's layout into results)."""

CPU_FLAG_PREFIXES = ("avx", "fma", "sse", "ssse", "amx", "f16c", "vnni", "neon", "asimd", "sve")
"""The CPU feature flags kept: the vector instruction sets XLA:CPU's kernels dispatch on."""

_SOURCE_DIR = pathlib.Path(__file__).resolve().parent


def _git(args: list[str], cwd: pathlib.Path) -> str | None:
  try:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10,
                          check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  return done.stdout if done.returncode == 0 else None


def git_state(source_dir: str | os.PathLike | None = None) -> dict[str, Any]:
  """The commit of the git work tree holding ``source_dir`` (default: this package's sources).

  Returns ``{"commit": str | None, "dirty": bool | None}``. ``dirty`` is ``True`` when a
  tracked file differs from the commit (untracked files, such as run outputs, do not count).
  Both are ``None`` outside a git work tree (an installed wheel) or without a ``git`` binary.
  """
  cwd = pathlib.Path(source_dir) if source_dir is not None else _SOURCE_DIR
  commit = _git(["rev-parse", "HEAD"], cwd)
  if commit is None:
    return {"commit": None, "dirty": None}
  status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
  return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
  """Installed version of each distribution in ``names`` (``None`` when not installed)."""
  versions = {}
  for name in names:
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      versions[name] = None
  return versions


def cpu_description(cpuinfo: str | None = None) -> dict[str, Any]:
  """The CPU model and its vector-instruction flags.

  Args:
    cpuinfo: text in the format of Linux's ``/proc/cpuinfo``; read from there when ``None``.

  Returns:
    ``{"system", "cpu_model", "cpu_flags"}``: ``cpu_flags`` is the sorted list of flags that
    start with one of :data:`CPU_FLAG_PREFIXES` (e.g. ``["avx", "avx2", "fma", …]``), or
    ``None`` where no cpuinfo is available; ``cpu_model`` falls back to
    ``platform.processor()``.
  """
  if cpuinfo is None:
    try:
      cpuinfo = pathlib.Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
      cpuinfo = ""
  model, flags = None, None
  for line in cpuinfo.splitlines():
    key, _, value = line.partition(":")
    key = key.strip().lower()
    if model is None and key in ("model name", "cpu model", "hardware"):
      model = value.strip() or None
    elif flags is None and key in ("flags", "features"):
      flags = sorted({flag for flag in value.split() if flag.startswith(CPU_FLAG_PREFIXES)})
  return {"system": platform.system(), "cpu_model": model or platform.processor() or None,
          "cpu_flags": flags}


def device_description() -> dict[str, Any]:
  """JAX's backend, the first device's kind and the device and process counts."""
  import jax  # pylint: disable=import-outside-toplevel
  devices = jax.devices()
  return {"backend": jax.default_backend(), "device_kind": devices[0].device_kind,
          "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
          "process_count": jax.process_count()}


def numeric_switches(environ: dict[str, str] | None = None) -> dict[str, Any]:
  """The settings that change a run's numbers without changing its config.

  Args:
    environ: the environment to read (default ``os.environ``).

  Returns:
    ``{"environment": {name: value}, "custom_gradients": bool | None, "jax_enable_x64": bool,
    "jax_default_matmul_precision": str | None, "conv_path": dict | None}``. ``environment``
    lists every variable named in :data:`ENVIRONMENT_NAMES` (``None`` when unset) and every
    set variable starting with one of :data:`ENVIRONMENT_PREFIXES` (:data:`PATH_VARIABLES` as
    ``"<set>"``). ``custom_gradients`` is whether the hand-written CPU
    backward passes are in use (``ds_symmetry.ops.gradients``), ``None`` when
    ``DS_SYMMETRY_CUSTOM_GRADIENTS`` holds an invalid value. ``conv_path`` is the path of
    each piece of every convolution (``ds_symmetry.ops.conv_paths``:
    ``{"forward", "input_grad", "weight_grad"}``, each ``"xla"``, ``"im2col"`` or ``"rows"``),
    ``None`` when ``DS_SYMMETRY_CONV_PATH`` holds an invalid value. Both are what code traced
    now uses (``os.environ`` and the context managers), whatever ``environ`` holds.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from ds_symmetry.ops import gradients  # pylint: disable=import-outside-toplevel
  environ = os.environ if environ is None else environ
  recorded = {name: environ.get(name) for name in ENVIRONMENT_NAMES}
  recorded.update({name: "<set>" if name in PATH_VARIABLES else value
                   for name, value in environ.items() if name.startswith(ENVIRONMENT_PREFIXES)})
  try:
    custom = bool(gradients.custom_gradients_enabled())
  except ValueError:
    custom = None
  precision = jax.config.jax_default_matmul_precision
  return {"environment": dict(sorted(recorded.items())), "custom_gradients": custom,
          "jax_enable_x64": bool(jax.config.jax_enable_x64),
          "jax_default_matmul_precision": None if precision is None else str(precision),
          "conv_path": _conv_path()}


def _conv_path() -> dict[str, str] | None:
  """Each piece's requested path (``auto``: chosen per convolution by
  ``ops.conv_paths.choose_conv_path``) and what ``auto`` does on this machine."""
  from ds_symmetry.ops import conv_paths  # pylint: disable=import-outside-toplevel
  try:
    requested = conv_paths.requested_conv_path()
  except ValueError:
    return None
  record = {piece: path or "auto" for piece, path in requested._asdict().items()}
  record["auto"] = conv_paths.auto_description()
  return record


def collect() -> dict[str, Any]:
  """Everything above in one JSON-ready dict (see the module docstring for its keys)."""
  return {"git": git_state(), "packages": package_versions(),
          "python": platform.python_version(), "machine": cpu_description(),
          "devices": device_description(), "switches": numeric_switches()}
