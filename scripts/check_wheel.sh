#!/usr/bin/env bash
# Packaging check (run by .ci/run): `python -m build` makes an sdist and a wheel; the wheel,
# installed into a fresh virtual environment, must work outside the repository: import the
# package, run the CLI's --help, and load MNIST through the package's own sources.
#
# The fresh environment borrows the dependencies of the repository's .venv through a .pth line
# instead of downloading them a second time (its own site-packages comes first, so
# `ds_symmetry` is the installed wheel, never the editable checkout: the script checks that).
#
#   bash scripts/check_wheel.sh [PYTHON]     # PYTHON: an interpreter with the dependencies
#                                            # installed (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
python="${1:-$repo/.venv/bin/python}"
work="$(mktemp -d "${TMPDIR:-/tmp}/ds_symmetry_wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT

"$python" -m pip install -q build
"$python" -m build --outdir "$work/dist" . > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
sdist="$(ls "$work"/dist/*.tar.gz)"
wheel="$(ls "$work"/dist/*.whl)"
echo "built $(basename "$sdist") ($(du -k "$sdist" | cut -f1) KiB) and $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"

# The sdist carries what a rebuild needs; the wheel carries the package and its licence only.
tar -tzf "$sdist" > "$work/sdist.txt"
for needed in setup.cfg pyproject.toml README.md LICENSE ds_symmetry/__init__.py ds_symmetry/data/sources.py; do
  grep -q "/$needed\$" "$work/sdist.txt" || { echo "sdist lacks $needed" >&2; exit 1; }
done
"$python" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
tops = sorted({name.split("/")[0] for name in names})
assert all(top == "ds_symmetry" or top.endswith(".dist-info") for top in tops), tops
assert any(name.endswith("LICENSE") for name in names), "the wheel carries no LICENSE"
assert "ds_symmetry/data/sources.py" in names
PY

"$python" -m venv "$work/venv"
site_packages="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
fresh_site="$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$site_packages" > "$fresh_site/borrowed_dependencies.pth"
"$work/venv/bin/python" -m pip install -q --no-deps --no-index "$wheel"

cd "$work"   # outside the repository: nothing there can shadow the installed package
"$work/venv/bin/python" - "$repo" "$fresh_site" <<'PY'
import os, sys
repo, fresh_site = sys.argv[1], sys.argv[2]
import ds_symmetry
from ds_symmetry import analysis, models, nn, ops, provenance, train
from ds_symmetry.data import load_dataset
where = os.path.realpath(ds_symmetry.__file__)
assert where.startswith(os.path.realpath(fresh_site)), f"ds_symmetry imported from {where}"
images, labels = load_dataset("mnist", "test")
assert images.shape == (10000, 28, 28, 1) and labels.shape == (10000,), (images.shape, labels.shape)
print(f"wheel: imported from {where}; MNIST test split {images.shape} through the package's sources")
PY
# absl's --help prints the usage and exits with status 1, so the text is what is checked
"$work/venv/bin/python" -m ds_symmetry.main --help > "$work/help.txt" 2>&1 || true
if grep -q "Traceback" "$work/help.txt" || ! grep -q -- "--workdir" "$work/help.txt"; then
  cat "$work/help.txt" >&2; echo "the CLI's --help failed" >&2; exit 1
fi
echo "wheel: python -m ds_symmetry.main --help lists the flags; packaging check passed"
