"""ds_symmetry.provenance: what a run's results.json records about where its numbers came from."""

import json
import pathlib
import shutil
import subprocess

import jax
import ml_collections
import pytest

from ds_symmetry import provenance

REPO = pathlib.Path(__file__).resolve().parents[1]
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="no git binary")

CPUINFO = """\
processor\t: 0
model name\t: Example CPU 9000
flags\t\t: fpu sse sse2 ssse3 sse4_2 fma avx avx2 avx512f avx512_vnni amx_tile nx lm
processor\t: 1
model name\t: Example CPU 9000
flags\t\t: fpu sse
"""


def _git(cwd, *args):
  subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                 cwd=cwd, check=True, capture_output=True)


@needs_git
def test_git_state_of_a_clean_then_edited_work_tree(tmp_path):
  _git(tmp_path, "init", "-q")
  (tmp_path / "tracked.txt").write_text("one\n")
  _git(tmp_path, "add", "tracked.txt")
  _git(tmp_path, "commit", "-q", "-m", "first")
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, check=True,
                        capture_output=True, text=True).stdout.strip()
  (tmp_path / "untracked_run_output.json").write_text("{}")  # untracked files do not count
  assert provenance.git_state(tmp_path) == {"commit": head, "dirty": False}
  (tmp_path / "tracked.txt").write_text("two\n")
  assert provenance.git_state(tmp_path) == {"commit": head, "dirty": True}


def test_git_state_outside_a_work_tree_is_none(tmp_path):
  assert provenance.git_state(tmp_path) == {"commit": None, "dirty": None}


@needs_git
def test_git_state_defaults_to_this_repository():
  if not (REPO / ".git").exists():
    pytest.skip("not a git clone")
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, check=True, capture_output=True,
                        text=True).stdout.strip()
  state = provenance.git_state()
  assert state["commit"] == head and isinstance(state["dirty"], bool)


def test_package_versions():
  versions = provenance.package_versions()
  assert list(versions) == ["jax", "jaxlib", "flax", "optax"]
  assert versions["jax"] == jax.__version__
  assert provenance.package_versions(("no-such-distribution-xyz",)) == {
      "no-such-distribution-xyz": None}


def test_cpu_model_and_vector_flags_from_cpuinfo():
  cpu = provenance.cpu_description(CPUINFO)
  assert cpu["cpu_model"] == "Example CPU 9000"
  # the first processor's flags, vector instruction sets only, sorted
  assert cpu["cpu_flags"] == ["amx_tile", "avx", "avx2", "avx512_vnni", "avx512f", "fma", "sse",
                              "sse2", "sse4_2", "ssse3"]


def test_cpu_description_without_cpuinfo_has_no_flags():
  cpu = provenance.cpu_description("")
  assert cpu["cpu_flags"] is None and "cpu_model" in cpu


def test_numeric_switches_list_the_named_and_prefixed_variables():
  environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2",
             "DS_SYMMETRY_FAST_CPU_CONV": "0", "JAX_PLATFORMS": "cpu", "HOME": "/home/someone"}
  switches = provenance.numeric_switches(environ)
  assert switches["environment"] == {
      "DS_SYMMETRY_CUSTOM_GRADIENTS": None, "DS_SYMMETRY_FAST_CPU_CONV": "0",
      "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  assert switches["jax_enable_x64"] is False
  assert isinstance(switches["custom_gradients"], bool)


def test_a_variable_that_names_a_location_is_recorded_as_set_not_its_path():
  environ = {"DS_SYMMETRY_REFERENCE_REPO": "/home/someone/learnable-weight-sharing",
             "DS_SYMMETRY_DATA": "/data/mnist"}
  recorded = provenance.numeric_switches(environ)["environment"]
  assert recorded["DS_SYMMETRY_REFERENCE_REPO"] == recorded["DS_SYMMETRY_DATA"] == "<set>"


def test_numeric_switches_see_x64(enable_x64):
  assert provenance.numeric_switches({})["jax_enable_x64"] is True


def test_collect_is_json_and_counts_the_devices():
  record = json.loads(json.dumps(provenance.collect()))
  assert set(record) == {"git", "packages", "python", "machine", "devices", "switches"}
  assert record["devices"]["device_count"] == jax.device_count()
  assert record["devices"]["backend"] == jax.default_backend()
  assert record["packages"]["flax"] is not None


def test_trainer_writes_provenance_into_results(tmp_path, mnist_dir):
  from test_train import tiny_config  # pylint: disable=import-outside-toplevel
  from ds_symmetry.train import train_and_evaluate  # pylint: disable=import-outside-toplevel
  config = tiny_config(mnist_dir, num_epochs=1, limit_train=64, limit_test=100,
                       save_figures=False, checkpoint_every_steps=1, protocol="mnist")
  config.unlock()
  config.model = "cnn"
  config.model_options = ml_collections.ConfigDict({"channels": 2})
  config.lock()
  train_and_evaluate(config, str(tmp_path / "run"))
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert results["provenance"]["packages"]["jax"] == jax.__version__
  assert results["provenance"]["devices"]["device_count"] == jax.device_count()
  assert "XLA_FLAGS" in results["provenance"]["switches"]["environment"]
