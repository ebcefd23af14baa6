"""Shared helpers for benchmarks: medians of repeated calls, compiled memory, tables."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import jax


def block(tree: Any) -> Any:
  return jax.tree_util.tree_map(
      lambda x: x.block_until_ready() if hasattr(x, "block_until_ready") else x, tree)


def median_time(fn: Callable[[], Any], *, repeats: int = 10, warmup: int = 2) -> float:
  """Median wall time in seconds of ``fn()`` (outputs blocked on) after ``warmup`` calls."""
  for _ in range(warmup):
    block(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    block(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def alternating_medians(functions: Sequence[Callable[[], Any]], *, repeats: int = 10,
                        warmup: int = 2) -> list[float]:
  """Median wall seconds of each function, their calls alternating (A B A B ...), so that
  load from elsewhere on a shared machine falls on all of them alike."""
  for fn in functions:
    for _ in range(warmup):
      block(fn())
  times = [[] for _ in functions]
  for _ in range(repeats):
    for fn, bucket in zip(functions, times):
      start = time.perf_counter()
      block(fn())
      bucket.append(time.perf_counter() - start)
  return [statistics.median(bucket) for bucket in times]


def compiled_memory_bytes(jitted: Callable, *args, **kwargs) -> dict[str, int]:
  """XLA's own memory accounting of a compiled function (deterministic, per device).

  Returns ``temp`` (scratch incl. saved residuals), ``argument``, ``output`` and
  ``peak`` = temp + argument + output - alias, in bytes.
  """
  compiled = jitted.lower(*args, **kwargs).compile()
  analysis = compiled.memory_analysis()
  if analysis is None:
    return {"temp": -1, "argument": -1, "output": -1, "peak": -1}
  temp = int(analysis.temp_size_in_bytes)
  argument = int(analysis.argument_size_in_bytes)
  output = int(analysis.output_size_in_bytes)
  alias = int(getattr(analysis, "alias_size_in_bytes", 0))
  return {"temp": temp, "argument": argument, "output": output,
          "peak": temp + argument + output - alias}


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
  """Renders rows (dicts) as a fixed-width text table; floats get 4 significant digits."""
  if not rows:
    return "(no rows)"
  columns = list(columns or rows[0].keys())

  def cell(value):
    if isinstance(value, float):
      return f"{value:.4g}"
    return str(value)

  body = [[cell(row.get(c, "")) for c in columns] for row in rows]
  widths = [max(len(c), *(len(r[i]) for r in body)) for i, c in enumerate(columns)]
  line = lambda values: "  ".join(v.rjust(w) for v, w in zip(values, widths))
  return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in body])


def device_description() -> str:
  device = jax.devices()[0]
  return f"{device.platform}:{getattr(device, 'device_kind', '?')} x{jax.device_count()}"
