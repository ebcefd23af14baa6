"""Opt-in-by-default XLA CPU flag that makes convolutions ~4x faster on CPU.

jaxlib 0.10's default CPU convolution path is several times slower than oneDNN; the flag
``--xla_cpu_experimental_ynn_fusion_type=dot`` routes convolutions through XNNPACK/YNN and
closes most of the gap (see ``docs/data.md`` §2; measured 265 ms -> 60 ms for one MNIST
WSCNN convolution). XLA aborts the whole process on an unknown flag, so it is only added for
jaxlib versions where it is known to exist, and only if the backend has not started yet
(XLA reads ``XLA_FLAGS`` once, when the first backend initialises).

Why this flag and no other, on every CPU kind: ``python -m benchmarks.run xla_cpu_flags`` times
each of XLA's CPU convolution back ends in its own process. On the AVX-512 CPU kind every
alternative (XLA's default Eigen convolution, YNN's and XNNPACK's per-convolution fusions,
oneDNN by custom call or by fusion) was 2.7-2.8x slower with gradients, NCHW operands 1.05x,
512-bit vectors no change (``docs/benchmarks.md``); on an earlier 2-core EPYC whose flags were
not recorded the default was about 4x slower (above). Nothing measured favours another back
end on any CPU, so the choice does not depend on the CPU's features.

Turn it off with ``DS_SYMMETRY_FAST_CPU_CONV=0``; force it with ``DS_SYMMETRY_FAST_CPU_CONV=1``.
"""

import os
import sys

FAST_CPU_CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=dot"
_KNOWN_GOOD_JAXLIB = ((0, 10),)  # (major, minor) versions where the flag was checked


def _jaxlib_version():
  try:
    from importlib.metadata import version
    parts = version("jaxlib").split(".")
    return int(parts[0]), int(parts[1])
  except Exception:  # pylint: disable=broad-except
    return None


def _backend_started() -> bool:
  xla_bridge = sys.modules.get("jax._src.xla_bridge")
  return bool(xla_bridge is not None and getattr(xla_bridge, "_backends", None))


def maybe_enable_fast_cpu_convolutions() -> bool:
  """Adds the flag to ``XLA_FLAGS`` when safe. Returns whether the flag is now set."""
  choice = os.environ.get("DS_SYMMETRY_FAST_CPU_CONV", "auto").lower()
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" in flags:
    return FAST_CPU_CONV_FLAG in flags
  if choice in ("0", "false", "no", "off"):
    return False
  if choice == "auto" and _jaxlib_version() not in _KNOWN_GOOD_JAXLIB:
    return False
  if _backend_started():
    return False
  os.environ["XLA_FLAGS"] = (flags + " " + FAST_CPU_CONV_FLAG).strip()
  return True
