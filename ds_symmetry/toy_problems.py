"""Data generators for symmetry-discovery toy problems (the paper's App. B, in our own words).

A problem has ``C`` canonical signals ``x̂_c`` on a grid of shape ``(k,)*D`` and a group ``G``
from the registry (``ops.groups``). A sample draws a canonical signal ``c`` and an element
``g`` (uniformly from ``elements``: all of ``G``, or a part of it) and returns

* the input ``x = ρ_x(g)·x̂_c + ε``, where ``ρ_x(g)`` is the group's spatial representation
  ``ops.spatial_permutations(group, k)[g]`` (a permutation; interpolation for ``C8``) and
  ``ε ~ N(0, noise²)`` on every grid point;
* the target: for the **equivariant** task ``y = ρ_y(g)·ŷ_c``, with ``ρ_y`` the regular
  representation on the group axis of a ``[C_out, G]`` array (``(ρ_y(g)ŷ)[:, h] =
  ŷ[:, g⁻¹h]``); for the **invariant** task ``y = ŷ_c`` for every ``g``. ``ŷ_c`` is either
  ``target="one_hot"``: the ``[C, G]`` one-hot at ``(c, identity)``, so the equivariant ``y``
  is one-hot at ``(c, g)`` (and the invariant one is one-hot at ``c``, shape ``[C]``); or
  ``target="teacher"``: the response of an exact lifting layer with random kernels
  ``θ*_o`` (``o < C_out``), ``ŷ_c[o, h] = ⟨ρ_x(h) θ*_o, x̂_c⟩``, so the equivariant ``y`` is
  that layer's output on the noise-free input (the invariant one its maximum over ``h``;
  for permutation groups the two descriptions agree, for the interpolated ``C8`` the target
  is the layer's output).

A single weight-sharing lifting layer whose kernel covers the whole grid (``WSLiftConv`` with
``kernel_size = k``, ``padding='VALID'``) maps a sample to ``[C_out, G]``: output ``(o, h)``
is ``⟨R_h θ_o, x⟩``. The exact stack ``R_h = ρ_x(h)`` solves both targets (with one-hot
targets when the ``C·G`` transformed signals are linearly independent). With the teacher
target and signals whose transformed copies span the grid, the outputs pin down
``R_h θ_o = ρ_x(h) θ*_o`` for every ``h``, and a doubly stochastic ``R_h`` that maps a generic
vector to one of its permutations *is* that permutation (a permutation of a vector with
distinct entries is an extreme point of the convex hull of its permutations).

Everything is pure jnp (jit-able): ``sample_batch`` draws a batch from a key, so training can
use a fresh batch per step.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ds_symmetry.ops import groups as _groups

TASKS = ("equivariant", "invariant")
TARGETS = ("one_hot", "teacher")


@dataclasses.dataclass(frozen=True)
class ToyProblem:
  """A toy problem: canonical signals, a group acting on them, and the sampled elements.

  Attributes:
    group: registered group name.
    base: float32 ``[C, k^D]`` canonical signals ``x̂_c``, flattened row-major.
    grid: ``(k,)*D``.
    elements: int32 ``[E]``, the group elements that are sampled (uniformly).
    noise: standard deviation of ``ε``.
    task: ``"equivariant"`` or ``"invariant"``.
    teacher: float32 ``[C_out, k^D]`` teacher kernels ``θ*`` (``target="teacher"``), or
      ``None`` for one-hot targets.
  """
  group: str
  base: jnp.ndarray
  grid: tuple
  elements: jnp.ndarray
  noise: float
  task: str
  teacher: Optional[jnp.ndarray] = None

  @property
  def num_signals(self) -> int:
    """``C``: the number of canonical signals (rows of ``base``)."""
    return int(self.base.shape[0])

  @property
  def num_outputs(self) -> int:
    """``C_out``: channels of the target (``C`` for one-hot targets)."""
    return self.num_signals if self.teacher is None else int(self.teacher.shape[0])

  @property
  def order(self) -> int:
    """``|G|``: the order of ``group`` (from the group registry)."""
    return _groups.group_order(self.group)


def _smooth(signals: np.ndarray, passes: int) -> np.ndarray:
  """Averages each grid point with its axis neighbours (zero outside), ``passes`` times."""
  for _ in range(passes):
    total, count = signals.copy(), np.ones_like(signals)
    for axis in range(1, signals.ndim):
      for shift in (1, -1):
        pad = [(0, 0)] * signals.ndim
        pad[axis] = (1, 0) if shift == 1 else (0, 1)
        keep = [slice(None)] * signals.ndim
        keep[axis] = slice(0, -1) if shift == 1 else slice(1, None)
        total += np.pad(signals, pad)[tuple(keep)]
        count += np.pad(np.ones_like(signals), pad)[tuple(keep)]
    signals = total / count
  return signals


def make_problem(group: str, kernel_size: int, num_signals: int, *, seed: int = 0,
                 noise: float = 0.1, task: str = "equivariant",
                 elements: Optional[Sequence[int]] = None, smoothing: int = 0,
                 target: str = "one_hot", teacher_channels: int = 4) -> ToyProblem:
  """Builds a toy problem with random canonical signals.

  Args:
    group: a registered group (e.g. ``"shift16"``, ``"C8"``, ``"cube"``, ``"C4xC4"``).
    kernel_size: k, the grid side; the grid is ``(k,)*D``, ``D`` the group's grid rank.
    num_signals: C, the number of canonical signals.
    seed: numpy seed of the signals.
    noise: standard deviation of the input noise ``ε``.
    task: ``"equivariant"`` or ``"invariant"``.
    elements: the sampled group elements (default: all); e.g. ``range(G // 2)`` for the
      "partial" problem.
    smoothing: neighbour-averaging passes applied to the signals (smooth signals suit the
      interpolated ``C8``). Signals are then standardised to zero mean and unit variance.
    target: ``"one_hot"`` or ``"teacher"`` (see the module docstring).
    teacher_channels: ``C_out`` for ``target="teacher"``; kernels ``N(0, 1/k^D)``.

  Returns:
    :class:`ToyProblem`.
  """
  spec = _groups.group_spec(group)
  if task not in TASKS:
    raise ValueError(f"task must be one of {TASKS}; got {task!r}")
  if target not in TARGETS:
    raise ValueError(f"target must be one of {TARGETS}; got {target!r}")
  for name, value in (("kernel_size", kernel_size), ("num_signals", num_signals),
                      ("teacher_channels", teacher_channels)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f"{name} must be a positive int; got {value!r}")
  if not noise >= 0:
    raise ValueError(f"noise must be a non-negative number; got {noise!r}")
  chosen = np.arange(spec.order) if elements is None else np.asarray(list(elements))
  if chosen.ndim != 1 or chosen.size == 0 or np.any((chosen < 0) | (chosen >= spec.order)):
    raise ValueError(f"elements must be a non-empty sequence of ints in [0, {spec.order}) for "
                     f"group {group!r}; got {elements!r}")
  _groups.spatial_permutations(group, kernel_size)          # validates the grid for the group
  grid = (kernel_size,) * spec.spatial_dims
  rng = np.random.default_rng(seed)
  signals = rng.normal(size=(num_signals, *grid))
  d = signals[0].size
  teacher = (jnp.asarray(rng.normal(size=(teacher_channels, d)) / np.sqrt(d), jnp.float32)
             if target == "teacher" else None)
  signals = _smooth(signals, smoothing)
  axes = tuple(range(1, signals.ndim))
  signals = (signals - signals.mean(axis=axes, keepdims=True)) / signals.std(
      axis=axes, keepdims=True)
  return ToyProblem(group=group, base=jnp.asarray(signals.reshape(num_signals, -1), jnp.float32),
                    grid=grid, elements=jnp.asarray(chosen, jnp.int32), noise=float(noise),
                    task=task, teacher=teacher)


def sample_batch(problem: ToyProblem, key: jax.Array, batch_size: int) -> dict:
  """Draws ``batch_size`` samples (signal and element uniform, independent).

  Returns:
    ``{"inputs": float32 [B, *grid, 1], "signals": int32 [B] (c), "elements": int32 [B] (g),
    "targets": float32 [B, C_out, G] (equivariant) or [B, C_out] (invariant)}``.
  """
  signal_key, element_key, noise_key = jax.random.split(key, 3)
  signals = jax.random.randint(signal_key, (batch_size,), 0, problem.num_signals)
  elements = problem.elements[jax.random.randint(element_key, (batch_size,), 0,
                                                 problem.elements.shape[0])]
  return _samples(problem, signals, elements, noise_key)


def every_pair_batch(problem: ToyProblem, key: jax.Array) -> dict:
  """One sample of every (signal, sampled element) pair, with fresh noise: a batch of
  ``C·E`` samples, signal major. Same dict as :func:`sample_batch`."""
  signals = jnp.repeat(jnp.arange(problem.num_signals), problem.elements.shape[0])
  elements = jnp.tile(problem.elements, problem.num_signals)
  return _samples(problem, signals, elements, key)


def _samples(problem: ToyProblem, signals, elements, noise_key) -> dict:
  batch_size = signals.shape[0]
  reps = _groups.spatial_permutations(problem.group, problem.grid[0])    # [G, k^D, k^D]
  clean = jnp.einsum("bnm,bm->bn", reps[elements], problem.base[signals])
  inputs = clean + problem.noise * jax.random.normal(noise_key, clean.shape)
  if problem.teacher is None:
    signal_hot = jax.nn.one_hot(signals, problem.num_signals)
    if problem.task == "equivariant":
      # ρ_y(g) e_(c, identity): the regular representation moves the identity slot to g.
      targets = signal_hot[:, :, None] * jax.nn.one_hot(elements, problem.order)[:, None, :]
    else:
      targets = signal_hot
  else:
    # ρ_y(g)ŷ_c with ŷ_c[o, h] = ⟨ρ_x(h) θ*_o, x̂_c⟩, i.e. ⟨ρ_x(h) θ*_o, ρ_x(g) x̂_c⟩ for the
    # exact layer (ρ_x(g) x̂_c is the noise-free input).
    targets = jnp.einsum("hnm,om,bn->boh", reps, problem.teacher, clean)
    if problem.task == "invariant":
      targets = jnp.max(targets, axis=-1)
  return {"inputs": inputs.reshape(batch_size, *problem.grid, 1), "signals": signals,
          "elements": elements, "targets": targets}
