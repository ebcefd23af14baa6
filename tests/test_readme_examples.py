"""The README's examples run as written: every ```python block preceded by ``<!-- readme-test -->``
is executed in a fresh namespace, in a subprocess-free way (each block is small: seconds)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- readme-test -->"
_BLOCK = re.compile(re.escape(MARKER) + r"\s*```python\n(.*?)```", re.DOTALL)


def marked_blocks(text: str) -> list[str]:
  """The source of every fenced python block that directly follows the marker."""
  return _BLOCK.findall(text)


def test_marker_finds_only_marked_blocks():
  text = f"{MARKER}\n```python\nx = 1\n```\n\n```python\ny = 2\n```\n{MARKER}\n\n```python\nz = 3\n```"
  assert marked_blocks(text) == ["x = 1\n", "z = 3\n"]


BLOCKS = marked_blocks(README.read_text(encoding="utf-8"))


def test_readme_has_both_examples():
  assert len(BLOCKS) == 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
  source = BLOCKS[index]
  exec(compile(source, f"README.md example {index + 1}", "exec"), {"__name__": "readme_example"})
