"""A learned lifting layer fitted to an exact one finds the planted group (toy problem)."""

import pytest

from experiments.discover_symmetry import discover


@pytest.mark.parametrize("group", ["C4", "flip"])
def test_learned_stack_discovers_the_planted_group(group):
  result = discover(group, steps=300, channels=6)
  assert result["relative_mse"][-1][1] < 0.02
  assert result["identified"] == group
  assert result["distance_to_planted_group"] < 0.2
  assert sorted(result["assignment"]) == list(range(len(result["assignment"])))


def test_without_learning_nothing_is_identified():
  result = discover("C4", steps=1, channels=6)
  assert result["identified"] == "none"
  assert result["distance_to_planted_group"] > 0.5
