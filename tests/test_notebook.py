"""Executes every code cell of ``notebooks/tour.ipynb`` in-process, on CPU, with tiny sizes.

A small runner of our own (no Jupyter needed): it reads the .ipynb JSON, runs the code cells in
order in one namespace, and replaces the values of the cell tagged ``parameters`` with the
test's. A cell that raises fails the test and names the cell. IPython-only syntax (``!`` or
``%`` lines) is refused, so the notebook stays runnable as plain Python.
"""

import json
import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "tour.ipynb"
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"


def code_cells(path):
  """``[(index, source, tags)]`` of the notebook's code cells."""
  notebook = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
  return [(index, "".join(cell["source"]), cell.get("metadata", {}).get("tags", []))
          for index, cell in enumerate(notebook["cells"]) if cell["cell_type"] == "code"]


def run_notebook(path, overrides, workdir):
  """Runs the code cells of ``path`` in ``workdir``; returns the final namespace."""
  namespace = {"__name__": "__main__"}
  previous = os.getcwd()
  os.chdir(workdir)
  try:
    for index, source, tags in code_cells(path):
      magic = [line for line in source.splitlines() if line.lstrip().startswith(("!", "%"))]
      if magic:
        raise AssertionError(f"cell {index} uses IPython syntax, keep it plain Python: {magic}")
      try:
        exec(compile(source, f"<{path.name} cell {index}>", "exec"), namespace)  # pylint: disable=exec-used
      except Exception as error:
        raise AssertionError(f"notebook cell {index} failed: {type(error).__name__}: {error}\n"
                             f"--- cell source ---\n{source}") from error
      if "parameters" in tags:
        namespace.update(overrides)
  finally:
    os.chdir(previous)
  return namespace


def test_notebook_has_a_parameter_cell_and_plain_python_cells():
  cells = code_cells(NOTEBOOK)
  tagged = [index for index, _, tags in cells if "parameters" in tags]
  assert len(tagged) == 1
  for name in ("DISCOVERY_STEPS", "CUBE_STEPS", "TRAIN_STEPS", "CHANNELS", "DATA_DIR"):
    assert any(f"{name} =" in source for index, source, _ in cells if index == tagged[0])


def test_runner_reports_the_failing_cell(tmp_path):
  notebook = {"cells": [
      {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": ["A = 1\n"]},
      {"cell_type": "markdown", "metadata": {}, "source": ["text"]},
      {"cell_type": "code", "metadata": {}, "source": ["B = A + 1\n", "assert B == 3\n"]}]}
  path = tmp_path / "bad.ipynb"
  path.write_text(json.dumps(notebook))
  with pytest.raises(AssertionError, match="cell 2 failed"):
    run_notebook(path, {}, tmp_path)
  assert run_notebook(path, {"A": 2}, tmp_path)["B"] == 3


@pytest.mark.slow
def test_tour_notebook_runs_every_cell(tmp_path, monkeypatch):
  """The whole tour with tiny sizes (without IPython the notebook prints figure paths instead
  of showing them). The trainer section runs when the shared MNIST files are
  there (``$DS_SYMMETRY_TEST_MNIST`` or ``../shared/data/mnist``) and is skipped by its own
  ``TRAIN_STEPS = 0`` branch otherwise, so the test never needs the network."""
  mnist = pathlib.Path(os.environ.get("DS_SYMMETRY_TEST_MNIST", SHARED_MNIST))
  has_mnist = (mnist / "train-images-idx3-ubyte.gz").exists()
  monkeypatch.setenv("DS_SYMMETRY_NO_DOWNLOAD", "1")
  overrides = {"REPO_DIR": str(REPO_ROOT), "DISCOVERY_STEPS": 20, "CUBE_STEPS": 30,
               "TRAIN_STEPS": 4 if has_mnist else 0, "CHANNELS": 4, "LIMIT_TEST": 64,
               "DATA_DIR": str(mnist) if has_mnist else None, "WORKDIR": "tour_run"}
  namespace = run_notebook(NOTEBOOK, overrides, tmp_path)
  assert namespace["ACCELERATOR"] in ("TPU", "GPU", "CPU")
  assert (tmp_path / "discovered_C4_stack.png").exists()
  assert (tmp_path / "appendix_b" / "cube_coefficients.png").exists()
  if has_mnist:
    assert (tmp_path / "tour_run" / "results.json").exists()
