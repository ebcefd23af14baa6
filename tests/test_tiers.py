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
