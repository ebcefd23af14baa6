"""The benchmark runner's saved tables (``benchmarks.run --save``): rows, command, provenance."""

import json
import types

import pytest

from benchmarks import run


def test_a_saved_benchmark_holds_its_rows_command_and_the_machine(tmp_path, monkeypatch):
  monkeypatch.delenv("DS_SYMMETRY_REFERENCE_REPO", raising=False)
  module = types.SimpleNamespace(TITLE="t", COLUMNS=["model", "ms"])
  rows = [{"model": "cnn", "ms": 12.34567}, {"model": "gcnn", "ms": 40.0}]
  path = run.save(str(tmp_path), "toy", module, rows, quick=True)
  record = json.loads(open(path, encoding="utf-8").read())
  assert record["rows"] == rows and record["columns"] == ["model", "ms"]
  assert record["command"] == "python -m benchmarks.run toy --quick"
  assert "cpu_model" in record["provenance"]["machine"]
  assert run.markdown_table(record) == ("| model | ms |\n|---|---|\n| cnn | 12.35 |\n"
                                        "| gcnn | 40 |\n")


def test_the_command_names_the_reference_checkout_when_it_was_timed(monkeypatch):
  monkeypatch.setenv("DS_SYMMETRY_REFERENCE_REPO", "/somewhere/learnable-weight-sharing")
  assert run.command("training", quick=False) == (
      "DS_SYMMETRY_REFERENCE_REPO=<checkout> python -m benchmarks.run training")


def test_the_runner_refuses_an_unknown_benchmark_in_one_line(capsys):
  with pytest.raises(SystemExit) as stop:
    run.main(["no_such_benchmark"])
  assert stop.value.code == 2
  assert "unknown benchmark(s) ['no_such_benchmark']" in capsys.readouterr().err
