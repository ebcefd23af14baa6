"""The documentation's generated tables (``experiments.doc_tables``): regenerating them from the
committed summaries reproduces every block in the pages exactly, so a hand edit fails here."""

import os
import shutil
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from experiments import doc_tables, tables  # noqa: E402


def test_every_generated_block_in_the_pages_matches_the_committed_summaries():
  assert doc_tables.stale(REPO) == [], "run: python -m experiments.doc_tables"


def test_every_table_generator_has_a_block_in_some_page():
  placed = {marker for _, marker in doc_tables.placements(REPO)}
  assert placed == set(doc_tables.BLOCKS)


def _copy(root, relative):
  target = os.path.join(root, relative)
  os.makedirs(os.path.dirname(target), exist_ok=True)
  shutil.copy(os.path.join(REPO, relative), target)


def test_a_hand_edit_of_a_generated_table_is_found_and_regenerated(tmp_path):
  root = str(tmp_path)
  for relative in ("docs/study/appendix_b.md", doc_tables.APPENDIX_B_SCORES):
    _copy(root, relative)
  page = os.path.join(root, "docs", "study", "appendix_b.md")
  original = open(page, encoding="utf-8").read()
  with open(page, "w", encoding="utf-8") as handle:
    handle.write(original.replace("| 0.993 |", "| 0.999 |", 1))
  assert doc_tables.stale(root) == ["docs/study/appendix_b.md: appendix-b-table"]
  assert doc_tables.main(["--check", f"--root={root}"]) == 1
  assert doc_tables.main([f"--root={root}"]) == 0
  assert open(page, encoding="utf-8").read() == original
  assert doc_tables.stale(root) == [] and doc_tables.write_all(root) == []


def test_write_into_replaces_only_the_named_block(tmp_path):
  page = tmp_path / "page.md"
  start, end = tables.markers("a-table")
  other_start, other_end = tables.markers("b-table")
  page.write_text(f"before\n{start}\nold\n{end}\nmiddle\n{other_start}\nkept\n{other_end}\n")
  tables.write_into(str(page), "a-table", "| new |\n")
  assert page.read_text() == (f"before\n{start}\n| new |\n{end}\nmiddle\n{other_start}\nkept\n"
                              f"{other_end}\n")
  assert tables.read_between(str(page), "a-table") == "| new |\n"
  assert tables.read_between(str(page), "b-table") == "kept\n"


@pytest.mark.parametrize("content", ["no markers\n",
                                     "<!-- a-table:start -->\n<!-- a-table:start -->\n"
                                     "<!-- a-table:end -->\n"])
def test_write_into_refuses_a_page_without_exactly_one_block_and_leaves_it(tmp_path, content):
  page = tmp_path / "page.md"
  page.write_text(content)
  with pytest.raises(ValueError, match="expected one <!-- a-table:start -->"):
    tables.write_into(str(page), "a-table", "x")
  assert page.read_text() == content


def _curve(accuracy, group=None, distance=None, rounded=False, epochs=2.0):
  point = {"epochs": epochs, "step": 1874, "test_accuracy": accuracy, "group": group,
           "group_distance": distance, "distance_C4": distance}
  return [dict(point, rounded=True) if rounded else point]


def test_same_budget_headline_gives_the_mean_each_seed_and_how_the_stack_ended():
  """Seeds in numeric order, mean and each seed's accuracy, the rounded row's group and steps
  in bold, a learned row's mean distance; a seed short of the last epoch is left out."""
  row = {"overrides": {"num_epochs": 2}}
  discover = dict(row, config="configs/rotated_mnist.py:wscnn", seeds={
      "10": {"rounded_at": 300, "curve": _curve(0.93, "C4", 0.0, rounded=True)},
      "2": {"rounded_at": 125, "curve": _curve(0.91, "C4", 0.0, rounded=True)}})
  paper = dict(row, config="configs/rotated_mnist.py:wscnn", seeds={
      "0": {"rounded_at": None, "curve": _curve(0.5, "none", 0.97)},
      "1": {"rounded_at": None, "curve": _curve(0.6, "none", 0.99)},
      "2": {"rounded_at": None, "curve": _curve(0.7, "none", 0.9, epochs=1.0)}})
  lines = doc_tables.headline_table(
      {"power_blend_discover": discover, "wscnn_paper": paper}).splitlines()
  assert lines[2].endswith("| 2 | **92.0%** (91.0, 93.0) | **C4, found from data** at steps "
                           "125, 300 |")
  assert lines[3].endswith("| 2 | 55.0% (50.0, 60.0) | no group (0.98 from C4) |")


def test_tuning_pass_row_counts_exact_answers_and_names_the_rest_and_the_pairs_not_run():
  records = [{"grid": "identification_tuning", "status": "done", "data": data, "seed": seed,
              "score": "exact", "answer": "x", "step": 100}
             for data in ("mirrored", "rotated") for seed in (0, 1)][:-1]
  records[1].update(score="superset", answer="D4", step=190)
  records.append(dict(records[0], grid="identification16"))  # another grid: not counted
  row = doc_tables._tuning_pass_row(records, "per element", "β 0.02")
  assert row == ["per element", "β 0.02",
                 "0, 1 (2 variants: mirrored, rotated; rotated seed 1 not run)", "2 of 3",
                 "`mirrored`, seed 1: D4 at step 190"]
  # Only the seeds that chose the settings, or none of them: no row.
  assert doc_tables._tuning_pass_row(records, "s", "b", only_seeds=(0,))[2:4] == [
      "0 (2 variants: mirrored, rotated)", "2 of 2"]
  assert doc_tables._tuning_pass_row(records, "s", "b", only_seeds=(7,)) is None


def test_the_speed_headline_reads_each_models_speedup_and_the_cpu_kind(tmp_path):
  import json
  from experiments import doc_tables
  rows = [{"model": "cnn", "augment": True, "speedup": 0.6654},
          {"model": "gcnn", "augment": True, "speedup": 1.1},
          {"model": "wscnn", "augment": False, "speedup": 9.0},   # the no-augmentation twin
          {"model": "wscnn", "augment": True, "speedup": 0.8791}]
  (tmp_path / "results" / "benchmarks").mkdir(parents=True)
  (tmp_path / "results" / "benchmarks" / "training.json").write_text(json.dumps({
      "rows": rows, "command": "python -m benchmarks.run training",
      "provenance": {"machine": {"cpu_model": "EPYC", "cpu_flags": ["avx2", "fma"]}}}))
  text = doc_tables.speed_headline(str(tmp_path))
  assert "| EPYC, no AVX-512 | 0.67× | 1.10× | 0.88× |" in text
  assert "`python -m benchmarks.run training`" in text
