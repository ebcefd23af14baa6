"""Shared pytest configuration: fast/slow markers, float64 toggling, shared data path."""

import os
import pathlib

import pytest

import ds_symmetry  # noqa: F401  (sets the fast CPU convolution flag before jax starts)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"


def pytest_collection_modifyitems(config, items):
  """Every test not marked ``slow`` is ``fast``."""
  for item in items:
    if "slow" not in item.keywords:
      item.add_marker(pytest.mark.fast)


@pytest.fixture
def enable_x64():
  import jax
  previous = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="session")
def shared_mnist_dir():
  """The gzipped MNIST files beside the repository (tests and CI only)."""
  path = pathlib.Path(os.environ.get("DS_SYMMETRY_TEST_MNIST", SHARED_MNIST))
  if not (path / "train-images-idx3-ubyte.gz").exists():
    pytest.fail(f"real MNIST files not found at {path}; set DS_SYMMETRY_TEST_MNIST")
  return path
