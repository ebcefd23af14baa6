"""Data types of an experiment grid: a :class:`Grid` is rows × seeds, a :class:`Row` is one
``configs/<file>.py:<variant>`` plus overrides, and :class:`Paper` is the number a row is
compared against. Pure Python (no JAX), so tables and listings start instantly.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_path(root: str, grid: str, row: str, seed: int) -> str:
  """The one place the layout of a grid's runs is spelled: ``<root>/<grid>/<row>/seed<seed>``
  (``root`` made absolute)."""
  return os.path.join(os.path.abspath(root), grid, row, f"seed{int(seed)}")


@dataclasses.dataclass(frozen=True)
class Paper:
  """A published result.

  Attributes:
    accuracy: mean test accuracy in percent, as printed.
    printed: the "± ..." part exactly as printed (units differ between the paper's tables).
    params: the "# Params" entry as printed ("" when the table has none).
  """
  accuracy: float
  printed: str = ""
  params: str = ""

  def text(self) -> str:
    return f"{self.accuracy:.2f} {self.printed}".strip()


@dataclasses.dataclass(frozen=True)
class Row:
  """One line of a table: a config variant plus overrides, run once per seed.

  Attributes:
    name: directory-safe identifier, unique in its grid (the run's workdir is
      ``<root>/<grid>/<name>/seed<k>``).
    config: ``"configs/<file>.py:<variant>"`` (relative to the repository root), exactly as
      ``--config`` of ``ds_symmetry.main`` takes it.
    label: the model as the paper's table names it ("WSCNN + norm + ent").
    setting: the dataset / column of the paper's table ("Rotations", "[0, 90°]"), or "".
    overrides: config fields (dotted names, e.g. ``"model_options.channels"``) to set.
    paper: the published number, or None (no counterpart in the paper).
    note: a short remark printed under the table.
  """
  name: str
  config: str
  label: str
  setting: str = ""
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  paper: Paper | None = None
  note: str = ""

  def __post_init__(self):
    if not self.name or any(c in self.name for c in "/\\ ") or self.name.startswith("."):
      raise ValueError(f"Row.name: {self.name!r} is not accepted; expected a non-empty "
                       f"directory name without '/', '\\\\' or spaces")
    if ":" not in self.config or not self.config.split(":")[0].endswith(".py"):
      raise ValueError(f"Row.config: {self.config!r} is not accepted; expected "
                       f"'configs/<file>.py:<variant>'")
    if "seed" in self.overrides:
      raise ValueError(f"Row.overrides of {self.name!r}: 'seed' is set per run by the grid")


@dataclasses.dataclass(frozen=True)
class Grid:
  """A named set of rows, each run for every seed.

  Attributes:
    name: the grid's name (``--grid=<name>``) and its directory under the root.
    title: a one-line caption.
    rows: the rows, in table order.
    seeds: default seeds (``--seeds`` replaces them).
    notes: lines printed under the table (choices the paper does not pin down).
  """
  name: str
  title: str
  rows: tuple[Row, ...]
  seeds: tuple[int, ...] = (0, 1, 2)
  notes: tuple[str, ...] = ()

  def __post_init__(self):
    names = [row.name for row in self.rows]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
      raise ValueError(f"Grid {self.name!r}: duplicate row names {duplicates}")
    if not self.rows:
      raise ValueError(f"Grid {self.name!r}: no rows")


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run: a row of a grid with one seed (and the command-line ``--set`` values).

  Attributes:
    grid, row, seed: what it is.
    workdir: ``<root>/<grid>/<row>/seed<seed>`` (absolute).
    overrides: the row's overrides merged with ``--set`` (which wins), without the seed.
  """
  grid: str
  row: Row
  seed: int
  workdir: str
  overrides: Mapping[str, Any]

  @property
  def key(self) -> str:
    return f"{self.grid}/{self.row.name}/seed{self.seed}"

  @property
  def log_path(self) -> str:
    return self.workdir + ".log"

  @property
  def lock_path(self) -> str:
    return self.workdir + ".lock"


def format_value(value: Any) -> str:
  """A config value as ``--config.<key>=<text>`` takes it (strings from ``--set`` verbatim)."""
  if isinstance(value, str):
    return value
  if isinstance(value, bool):
    return "True" if value else "False"
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, int):
    return str(value)
  raise ValueError(f"override value {value!r} ({type(value).__name__}) is not accepted; "
                   f"expected str, bool, int or float")
