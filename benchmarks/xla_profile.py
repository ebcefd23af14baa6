"""What one jitted call spends its time on, from XLA's own CPU profile.

:func:`op_times` runs a jitted function under ``jax.profiler`` and sums, per HLO instruction,
the durations of XLA's per-thunk trace events (``hlo_op``). :class:`HloIndex` reads the
compiled HLO text (instructions, fused computations, and the Python stack frames XLA keeps in
the metadata) so :func:`classify` can put each instruction into a part of a training step:
convolution forward / input gradient / weight gradient of a layer, normalisation, kernel-stack
build, Sinkhorn, relayouts, optimizer, ...

Thunks can overlap (XLA runs independent thunks concurrently on its thread pool), so the sum
of the per-op times may exceed the wall time of the call; callers show both.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import re
import tempfile
from typing import Callable, Optional, Sequence

import jax

_COMPUTATION = re.compile(r"^(ENTRY )?%([\w.\-]+) \(.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*?) ([a-z][a-z0-9\-]*)\((.*)$")
_SHAPE = re.compile(r"^[a-z0-9]+\[([0-9,]*)\]")
# Data movement only: a fusion made of these (or a bare one) is a relayout.
_MOVES = {"copy", "transpose", "bitcast", "reshape", "broadcast", "slice", "concatenate", "pad",
          "reverse", "parameter", "constant", "dynamic-slice", "dynamic-update-slice",
          "bitcast-convert", "tuple", "get-tuple-element", "iota"}


@dataclasses.dataclass
class Instruction:
  name: str
  opcode: str
  shape: tuple[int, ...]
  operands: list[str]
  text: str
  computation: str
  calls: list[str]
  frame: Optional[int]
  op_name: str


class HloIndex:
  """Instructions, computations and stack frames of a compiled HLO module's text."""

  def __init__(self, text: str):
    self.instructions: dict[str, Instruction] = {}
    self.computations: dict[str, list[str]] = collections.defaultdict(list)
    self.files, self.functions, self.locations, self.frames = {}, {}, {}, {}
    section, computation = None, None
    for line in text.splitlines():
      stripped = line.strip()
      if stripped in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
        section = stripped
        continue
      if section and stripped and stripped[0].isdigit():
        self._table_row(section, stripped)
        continue
      section = None
      match = _COMPUTATION.match(line)
      if match:
        computation = match.group(2)
        continue
      match = _INSTRUCTION.match(line)
      if match and computation:
        self._add(computation, *match.groups())

  def _table_row(self, section, row):
    key, _, rest = row.partition(" ")
    key = int(key)
    if section == "FileNames":
      self.files[key] = rest.strip('"')
    elif section == "FunctionNames":
      self.functions[key] = rest.strip('"')
    elif section == "FileLocations":
      fields = dict(re.findall(r"(\w+)=(\d+)", rest))
      self.locations[key] = (int(fields.get("file_name_id", 0)),
                             int(fields.get("function_name_id", 0)))
    else:
      fields = dict(re.findall(r"(\w+)=(\d+)", rest))
      self.frames[key] = (int(fields.get("file_location_id", 0)),
                          int(fields.get("parent_frame_id", 0)))

  def _add(self, computation, name, shape_text, opcode, rest):
    shape_match = _SHAPE.match(shape_text)
    shape = tuple(int(v) for v in shape_match.group(1).split(",") if v) if shape_match else ()
    args = rest.split(")", 1)[0]
    operands = re.findall(r"%([\w.\-]+)", args)
    calls = re.findall(r"calls=%([\w.\-]+)", rest)
    frame = re.search(r"stack_frame_id=(\d+)", rest)
    op_name = re.search(r'op_name="([^"]*)"', rest)
    self.instructions[name] = Instruction(
        name, opcode, shape, operands, rest, computation, calls,
        int(frame.group(1)) if frame else None, op_name.group(1) if op_name else "")
    self.computations[computation].append(name)

  def stack(self, frame: Optional[int]) -> list[tuple[str, str]]:
    """``[(file, function), ...]`` innermost first."""
    out, seen = [], set()
    while frame and frame in self.frames and frame not in seen:
      seen.add(frame)
      location, parent = self.frames[frame]
      file_id, function_id = self.locations.get(location, (0, 0))
      out.append((self.files.get(file_id, ""), self.functions.get(function_id, "")))
      frame = parent
    return out

  def users(self, name: str) -> list[str]:
    if not hasattr(self, "_users"):
      self._users = collections.defaultdict(list)
      for inst in self.instructions.values():
        for operand in inst.operands:
          self._users[operand].append(inst.name)
    return self._users.get(name, [])

  def is_control_flow(self, name: str) -> bool:
    """While loops, conditionals and calls: their bodies' thunks are traced on their own."""
    inst = self.instructions.get(name)
    return inst is not None and inst.opcode in ("while", "conditional", "call")

  def body(self, name: str) -> list[Instruction]:
    """The instruction itself, or every instruction of the computations it calls (fusions)."""
    inst = self.instructions[name]
    if not inst.calls:
      return [inst]
    out, todo = [], list(inst.calls)
    while todo:
      for member in self.computations.get(todo.pop(), []):
        member_inst = self.instructions[member]
        out.append(member_inst)
        todo.extend(member_inst.calls)
    return out


@dataclasses.dataclass
class ConvLayer:
  """One convolution layer of a model: square input ``size`` and kernel ``k``."""
  size: int
  k: int

  @property
  def out(self) -> int:
    return self.size - self.k + 1


def _window(text: str) -> tuple[int, ...]:
  match = re.search(r"window=\{size=([0-9x]+)", text)
  return tuple(int(v) for v in match.group(1).split("x")) if match else ()


def _spatial_out(inst: Instruction) -> tuple[int, ...]:
  labels = re.search(r"dim_labels=\w+_\w+->(\w+)", inst.text)
  if not labels:
    return ()
  out = labels.group(1)
  return tuple(inst.shape[out.index(d)] for d in "01" if d in out)


def conv_part(inst: Instruction, layers: Sequence[ConvLayer],
              functions: Sequence[str] = ()) -> str:
  """``"conv L<i> forward"``, ``"… input-grad"`` or ``"… weight-grad"`` from the shapes
  (and, for ``ops.gradients``' input gradient, the function that made it)."""
  window, spatial = _window(inst.text), _spatial_out(inst)
  for i, layer in enumerate(layers):
    if spatial == (layer.k, layer.k) and window == (layer.out, layer.out):
      return f"conv L{i} weight-grad"
  backward = "transpose(" in inst.op_name or "_input_grad" in functions
  if backward and spatial:  # also the row blocks of ops.gradients' input gradient
    for i, layer in enumerate(layers):
      if spatial[-1] == layer.size:
        return f"conv L{i} input-grad"
  for i, layer in enumerate(layers):
    if backward and spatial == (layer.size, layer.size):
      return f"conv L{i} input-grad"
    if not backward and spatial == (layer.out, layer.out):
      return f"conv L{i} forward"
  return "conv (other)"


# (category, predicate on (file, function) of any frame, innermost first) — first match wins.
_FRAME_RULES = (
    # A convolution piece that ops.conv_paths computes by im2col, rows or winograd: matrix
    # products and transforms, not XLA convolution ops, so not assigned to a layer.
    ("conv (im2col / rows / winograd paths)",
     lambda f, fn: f.endswith(("ops/conv_paths.py", "ops/winograd.py"))),
    ("Sinkhorn + regularisers", lambda f, fn: f.endswith(("ops/sinkhorn.py",
                                                          "ops/regularisers.py"))),
    ("kernel-stack build", lambda f, fn: f.endswith(("ops/kernels.py", "ops/structure.py",
                                                     "nn/weight_sharing.py", "ops/groups.py"))
     and fn not in ("_unflatten_group_axis", "conv2d", "conv_nd")),
    ("bias + norm + ReLU", lambda f, fn: f.endswith(("ops/normalization.py", "nn/norms.py"))
     or fn.startswith(("_standardize", "standardize_fused"))
     or fn in ("relu", "_unflatten_group_axis", "Conv.__call__", "ConvNet.features",
               "ResidualBlock.__call__")),
    ("augmentation + batch gather", lambda f, fn: "/data/" in f),
    ("head + loss", lambda f, fn: "optax/losses" in f or fn in ("Linear.__call__",
                                                               "_global_mean")),
    ("optimizer (AdamW)", lambda f, fn: "optax" in f),
)


def _frame_category(index: HloIndex, frames) -> Optional[str]:
  for frame in frames:
    stack = index.stack(frame)
    if stack:
      return next((c for c, rule in _FRAME_RULES if any(rule(f, fn) for f, fn in stack)),
                  "other")
  return None


def classify(index: HloIndex, name: str, layers: Sequence[ConvLayer]) -> str:
  """The part of a training step an instruction belongs to."""
  body = index.body(name)
  convs = [i for i in body if i.opcode == "convolution"]
  if convs:
    functions = [fn for _, fn in index.stack(convs[0].frame)]
    return conv_part(convs[0], layers, functions)
  opcodes = {i.opcode for i in body} - {"fusion"}
  inst = index.instructions[name]
  category = _frame_category(index, [inst.frame] + [i.frame for i in body])
  if category is None:
    # Instructions XLA created itself (e.g. a reduction split for the thread pool) carry no
    # stack frames: take those of the nearest users, then of the operands.
    seen, todo = {name}, list(index.users(name)) + list(inst.operands)
    while todo and category is None and len(seen) < 50:
      other = todo.pop(0)
      if other in seen or other not in index.instructions:
        continue
      seen.add(other)
      other_inst = index.instructions[other]
      if other_inst.opcode == "convolution" or any(
          i.opcode == "convolution" for i in index.body(other)):
        continue  # a convolution's neighbours are not the convolution
      category = _frame_category(index, [other_inst.frame]
                                 + [i.frame for i in index.body(other)])
      todo += index.users(other)
  category = category or "other"
  if opcodes <= _MOVES or "transpose" in opcodes:
    # A copy / transpose (possibly with cheap arithmetic fused in, e.g. a norm recomputed
    # while an activation is transposed for a weight-gradient convolution): what it serves.
    return "relayout: " + ("conv operands" if category == "other" else category)
  return category


def op_intervals(fn: Callable[[], object], calls: int, module: Optional[str] = None
                 ) -> list[tuple[str, int, int]]:
  """``(op, begin_ns, end_ns)`` of every HLO instruction (thunk) run in ``calls`` traced calls.

  ``fn()`` must run the compiled function once (outputs blocked on); ``module`` keeps only
  events of that HLO module (e.g. ``"jit_train"``). An asynchronous thunk (e.g. a
  convolution handed to the thread pool) returns before its work is done; its interval ends
  at the ``"end: <op>"`` event that marks completion."""
  with tempfile.TemporaryDirectory() as directory:
    jax.profiler.start_trace(directory)
    try:
      for _ in range(calls):
        jax.block_until_ready(fn())
    finally:
      jax.profiler.stop_trace()
    path = glob.glob(f"{directory}/**/*.xplane.pb", recursive=True)[0]
    from jax.profiler import ProfileData  # pylint: disable=import-outside-toplevel
    data = ProfileData.from_file(path)
    starts, ends = collections.defaultdict(list), collections.defaultdict(list)
    planes = list(data.planes)
    # On an accelerator the kernels' own events are on the device planes; host events of the
    # same ops are launches.
    device = [p for p in planes if p.name.startswith("/device:")]
    for plane in device or planes:
      for line in plane.lines:
        for event in line.events:
          if event.name.startswith("end: "):
            ends[event.name[5:]].append(event.start_ns)
            continue
          stats = dict(event.stats)
          op = stats.get("hlo_op")
          if op is None or (module and stats.get("hlo_module") != module):
            continue
          starts[str(op)].append((event.start_ns, event.start_ns + event.duration_ns))
  intervals = []
  for op, spans in starts.items():
    done = iter(sorted(ends.get(op, [])))
    for begin, end in sorted(spans):
      finish = next((t for t in done if t >= begin), end)
      intervals.append((op, int(begin), int(max(end, finish))))
  return intervals


def exclusive_times(intervals: Sequence[tuple[str, int, int]], calls: int,
                    skip: Callable[[str], bool] = lambda op: False) -> dict[str, float]:
  """Milliseconds per call of each op, wall time shared out: while ``n`` ops run at once,
  each is charged ``1/n`` of the elapsed time. The values add up to the time during which at
  least one op was running (the rest of a call's wall time is idle or dispatch)."""
  events = []
  for op, begin, end in intervals:
    if skip(op) or end <= begin:
      continue
    events.append((begin, 1, op))
    events.append((end, -1, op))
  events.sort(key=lambda e: (e[0], e[1]))
  active: collections.Counter = collections.Counter()
  totals: dict[str, float] = collections.defaultdict(float)
  last = None
  for time_ns, kind, op in events:
    count = sum(active.values())
    if last is not None and count:
      share = (time_ns - last) / count
      for name, n in active.items():
        totals[name] += share * n
    last = time_ns
    active[op] += kind
    if active[op] == 0:
      del active[op]
  return {op: ns / 1e6 / calls for op, ns in totals.items()}


def breakdown(index: HloIndex, times: dict[str, float], layers: Sequence[ConvLayer]
              ) -> dict[str, float]:
  """Milliseconds per call of each part (see :func:`classify`)."""
  parts: dict[str, float] = collections.defaultdict(float)
  for op, ms in times.items():
    parts[classify(index, op, layers) if op in index.instructions else "other"] += ms
  return dict(parts)
