"""The test tiers stay what the docs say they are."""

import pathlib

import conftest

TESTS = pathlib.Path(__file__).resolve().parent


def test_every_core_file_exists():
  missing = sorted(name for name in conftest.CORE_FILES if not (TESTS / name).exists())
  assert not missing, f"CORE_FILES names files that are not in tests/: {missing}"


def test_core_tier_covers_ops_nn_models_and_analysis():
  for file in ("test_sinkhorn.py", "test_norms.py", "test_models.py", "test_analysis.py"):
    assert file in conftest.CORE_FILES


def test_every_test_moved_to_the_slow_tier_exists():
  """A renamed test or parameter would silently fall back into the default tier."""
  import subprocess
  import sys
  files = sorted({entry.split("::")[0] for entry in conftest.SLOW_TESTS})
  listing = subprocess.run(
      [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "slow",
       *(str(TESTS / name) for name in files)],
      capture_output=True, text=True, check=False, cwd=TESTS.parent).stdout
  collected = {line.split("/")[-1] for line in listing.splitlines() if "::" in line}
  missing = sorted(conftest.SLOW_TESTS - collected)
  assert not missing, f"SLOW_TESTS names tests that are not collected: {missing}"
