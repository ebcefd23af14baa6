#!/usr/bin/env bash
# Proves the lower bounds in setup.cfg: installs exactly the lowest allowed version of every
# install_requires entry (each ">=X" becomes "==X") into a fresh virtual environment and runs a
# focused subset of the fast tests there. Usage, from anywhere:
#
#   bash scripts/lowest_versions.sh            # venv in /tmp/ds_symmetry_lowest
#   VENV=/path/to/venv bash scripts/lowest_versions.sh
#
# Why it matters: on Colab, `pip install -e .` must not replace the runtime's accelerator-enabled
# jax with a CPU build, so the bounds must be the oldest versions the code really needs
# (flax 0.12.1: nnx.List, nnx.iter_modules, Variable.get_value; it needs jax >= 0.8.1, which
# needs numpy >= 2.0 and scipy >= 1.13). Not part of .ci/run: it downloads a
# second set of wheels; run it when a bound changes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-/tmp/ds_symmetry_lowest}"
CONSTRAINTS="$(mktemp)"
python3 - "$CONSTRAINTS" <<'PY'
import configparser, re, sys
config = configparser.ConfigParser()
config.read("setup.cfg")
pins = []
for line in config["options"]["install_requires"].strip().splitlines():
  match = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)>=([0-9][^,\s]*)\s*", line)
  if not match:
    sys.exit(f"setup.cfg: cannot read a lower bound from {line!r}")
  name, version = match.groups()
  pins.append(f"{name}=={version}")
  if name == "jax":
    pins.append(f"jaxlib=={version}")
open(sys.argv[1], "w").write("\n".join(pins) + "\n")
print("pinned:", " ".join(pins))
PY
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" -e . "pytest>=8.0" "hypothesis>=6.100"
"$VENV/bin/python" -m pip list 2>/dev/null | grep -iE "^(jax|jaxlib|flax|optax|chex|orbax-checkpoint|numpy|scipy|matplotlib) "
"$VENV/bin/python" -m pytest -q -x -p no:cacheprovider \
  tests/test_groups.py tests/test_grids_nd.py tests/test_kernels.py tests/test_testing.py \
  tests/test_toy_problems.py tests/test_discovery.py tests/test_models.py tests/test_regularisers.py \
  "$@"
