"""The committed results/ tree: small, summaries only, and still enough for the study report."""

import json
import os
import pathlib
import subprocess

import pytest

from experiments import same_budget_report
from test_same_budget import _write_run

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS_BUDGET_BYTES = 2_000_000


def _tracked(under: str) -> list[str]:
  if not (REPO / ".git").exists():
    pytest.skip("not a git clone")
  listed = subprocess.run(["git", "ls-files", "-z", under], cwd=REPO, check=True,
                          capture_output=True).stdout.decode()
  return [name for name in listed.split("\0") if name]


def test_committed_results_are_small_and_hold_no_workdir_payloads():
  files = [name for name in _tracked("results") if (REPO / name).exists()]
  assert files, "results/ holds no tracked file"
  payloads = [name for name in files
              if name.endswith(".npz") or "/checkpoints/" in name or "/tensorboard/" in name]
  assert payloads == []
  assert sum(os.path.getsize(REPO / name) for name in files) < RESULTS_BUDGET_BYTES


def test_report_reads_the_rounding_from_results_json_without_the_stacks_archive(tmp_path):
  """A clone has no discovered_stacks.npz: the report reads the same record from results.json."""
  root = str(tmp_path)
  _write_run(root, "power_blend_discover", 0, [0.3, 0.35, 0.5, 0.7], [0.9, 0.8, None, None])
  workdir = os.path.join(root, "same_budget", "power_blend_discover", "seed0")
  with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as file:
    json.dump({"status": "finished",
               "discovery": {"step": 250, "group": "C4", "is_group": True}}, file)
  summary = same_budget_report.collect(root, discover=False)
  run = summary["power_blend_discover"]["seeds"]["0"]
  assert run["rounded_at"] == 250
  assert [p.get("rounded", False) for p in run["curve"]] == [False, False, True, True]
