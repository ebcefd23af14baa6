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
