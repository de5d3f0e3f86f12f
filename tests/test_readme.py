"""The README's first screen keeps its promises: two commands, a Python example that runs as written, and links that
lead somewhere."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of ``language`` in a markdown file, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.M | re.S)


@pytest.mark.parametrize(
    ("page", "index"),
    [("README.md", i) for i in range(len(blocks(README, "python")))]
    + [("docs/guidance.md", i) for i in range(len(blocks(ROOT / "docs/guidance.md", "python")))],
)
def test_python_blocks_run_as_written(page, index, tmp_path, monkeypatch, capsys):
    source = blocks(ROOT / page, "python")[index]
    script = tmp_path / "example.py"
    script.write_text(source)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    if "print(guide.stats)" in source:  # the loop's guidance explained something and its masks are in [0, 1]
        stats = eval(capsys.readouterr().out.strip().splitlines()[-1])  # a dict literal printed by the example
        assert stats["n_explained"] > 0 and 0 < stats["mask_mean"] <= 1


def test_first_lines_give_exactly_two_commands_and_ci_runs_the_second():
    commands = blocks(README, "bash")[0].strip().splitlines()
    assert len(commands) == 2 and commands[0].endswith("xaigan demo") and commands[1].endswith("pytest -q")
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
    assert len(README.read_text().splitlines()) < 150


def test_relative_links_lead_to_files():
    text = README.read_text()
    targets = re.findall(r"\]\(((?!https?://)[^)#]+)\)", text)
    assert targets, "the README links to its docs"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
