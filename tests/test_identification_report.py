"""experiments.identification: scoring answers, the table, and writing it between markers."""

import pytest

from experiments import identification


@pytest.mark.parametrize("answer, expected, score", [
    ("C4", "C4", "exact"),
    ("D4", "C4", "superset"),      # the data's group plus mirrors it does not have
    ("C2", "C4", "wrong"),         # a proper subgroup misses symmetries: not a superset
    ("flip", "C2", "wrong"),
    ("D2", "flip", "superset"),
    (None, "trivial", "undecided"),
])
def test_every_answer_is_scored_against_the_expected_subgroup(answer, expected, score):
  assert identification.score(answer, expected) == score


def _record(grid, data, answer, step, wall, seed=100):
  return {"grid": grid, "data": data, "seed": seed, "status": "done", "answer": answer,
          "step": step,
          "wall_s": wall, "score": identification.score(answer, identification.EXPECTED[data])}


def test_the_table_counts_exact_answers_over_every_run_failures_included():
  records = [_record("identification16", "mirrored", "flip", 200, 100.0),
             _record("identification16", "mirrored", "D2", 250, 120.0),
             _record("identification16", "mirrored", None, None, 150.0),
             _record("identification16", "upright", "trivial", 140, 60.0)]
  text = identification.table(records)
  assert "| mirrored | flip | **1/3** (D2 1, flip 1, undecided 1; step ≤ 250; median 120 s) |" in text
  assert "| upright | trivial | **1/1**" in text
  assert "| rotated | C4 | – |" in text
  assert "32 ch" not in text                     # a grid without runs gets no column
  assert "learned, 16 ch (seeds 100)" in text    # the seeds that ran, not the grid's plan


def test_write_into_replaces_only_the_marked_block(tmp_path):
  page = tmp_path / "page.md"
  page.write_text(f"before\n{identification.START}\nold\n{identification.END}\nafter\n")
  identification.write_into(str(page), "| new |\n")
  assert page.read_text() == (f"before\n{identification.START}\n| new |\n"
                              f"{identification.END}\nafter\n")
  page.write_text("no markers\n")
  with pytest.raises(ValueError, match="expected one"):
    identification.write_into(str(page), "x")


def test_merge_keeps_earlier_runs_and_prefers_the_new_record():
  def run(seed, answer, status="done"):
    return dict(_record("identification32", "rotated", answer, 300, 60.0, seed=seed),
                method="learned", channels=32, status=status)
  previous = [run(100, "C4"), run(101, "C2"), run(102, None, status="missing")]
  merged = identification.merge([run(101, "C4"), run(103, "C4")], previous)
  assert [(r["seed"], r["answer"]) for r in merged] == [(100, "C4"), (101, "C4"), (103, "C4")]
  assert identification.merge([], []) == []


def test_a_summary_stores_each_provenance_once_and_reads_back_the_same_records(tmp_path):
  import json
  from experiments.tables import read_records, write_records
  here = {"machine": {"cpu_model": "A"}, "git": {"commit": "1"}}
  there = {"machine": {"cpu_model": "B"}, "git": {"commit": "2"}}
  records = [{"seed": s, "answer": "C4", "provenance": p}
             for s, p in ((100, here), (101, here), (102, there), (103, None))]
  path = tmp_path / "summary.json"
  write_records(str(path), records)
  stored = json.loads(path.read_text())
  assert stored["provenances"] == [here, there, None]
  assert [r["provenance"] for r in stored["records"]] == [0, 0, 1, 2]
  assert read_records(str(path)) == records
  path.write_text(json.dumps(records))          # an older summary: a plain list of records
  assert read_records(str(path)) == records


def test_collect_reads_the_answer_grids_only(tmp_path):
  """Runs of the accuracy grids (group_benefit, benefit_tuning) under the same root are not
  identification runs: collect leaves them to experiments.group_benefit."""
  import json
  learned = tmp_path / "identification_tuning" / "mirrored_16" / "seed0"
  learned.mkdir(parents=True)
  (learned / "results.json").write_text(json.dumps({"status": "finished"}))
  for grid, row in (("benefit_tuning", "mirrored_kept"), ("group_benefit", "mirrored_cnn")):
    (tmp_path / grid / row / "seed0").mkdir(parents=True)
  (record,) = identification.collect(str(tmp_path))
  assert (record["grid"], record["data"], record["channels"]) == (
      "identification_tuning", "mirrored", 16)
  assert record["answer"] is None and record["score"] == "undecided"
