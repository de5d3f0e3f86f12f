"""A person's reading of a study in plain words, shown first in its report.

``reading.md`` sits in the study's record folder beside its runs, so regenerating the report from the record keeps
it. Its first line may say how many runs it was written for (``<!-- written for 30 runs -->``); when the record has
since grown or shrunk, the report says so above the reading rather than let old words pass for the new tables.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

READING = "reading.md"
_WRITTEN_FOR = re.compile(r"^\s*<!--\s*written for (\d+) runs\s*-->\s*\n?")
_CODE = re.compile(r"`([^`]+)`")
_EMPHASIS = [
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    # One star on each side, touching the text: "2 * 3" and "a*b" stay as they are.
    (re.compile(r"(?<![*\w])\*(?=\S)([^*]+?)(?<=\S)\*(?![*\w])"), r"<em>\1</em>"),
]


@dataclass(frozen=True)
class Reading:
    text: str  # Markdown, without the marker line
    written_for: int | None


def load_reading(folder: str | Path) -> Reading | None:
    """The reading in ``folder``, or None when there is none (or it is empty)."""
    path = Path(folder) / READING
    if not path.is_file():
        return None
    text = path.read_text()
    match = _WRITTEN_FOR.match(text)
    written_for = int(match.group(1)) if match else None
    text = text[match.end() :] if match else text
    return Reading(text.strip(), written_for) if text.strip() else None


def stale_note(reading: Reading, n_runs: int) -> str | None:
    """A warning when the reading was written for another number of finished runs than the record holds now."""
    if reading.written_for is None or reading.written_for == n_runs:
        return None
    return (
        f"Written when {reading.written_for} runs were recorded; the record now holds {n_runs}: the tables below are "
        "newer than these words."
    )


def _emphasis(text: str) -> str:
    out = html.escape(text, quote=False)
    for pattern, repl in _EMPHASIS:
        out = pattern.sub(repl, out)
    return out


def _inline(text: str) -> str:
    """Code spans verbatim (escaped), bold and italic outside them."""
    parts = _CODE.split(text)  # even indices: prose; odd: the insides of code spans
    return "".join(
        f"<code>{html.escape(part, quote=False)}</code>" if i % 2 else _emphasis(part) for i, part in enumerate(parts)
    )


def reading_html(text: str) -> str:
    """The reading's paragraphs and ``- `` bullet lists as HTML (code, bold and italic kept; the rest escaped)."""
    blocks = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if all(line.startswith(("- ", "  ")) for line in lines) and lines[0].startswith("- "):
            items: list[str] = []
            for line in lines:
                if line.startswith("- "):
                    items.append(line[2:].strip())
                else:
                    items[-1] += " " + line.strip()
            blocks.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
        else:
            blocks.append(f"<p>{_inline(' '.join(line.strip() for line in lines))}</p>")
    return "".join(blocks)


HEADING = "What we found, in plain words"


def reading_markdown(reading: Reading | None, n_runs: int) -> list[str]:
    """The report's first section in Markdown lines (none without a reading)."""
    if reading is None:
        return []
    stale = stale_note(reading, n_runs)
    return [f"## {HEADING}", ""] + ([f"> {stale}", ""] if stale else []) + [reading.text, ""]


def reading_section_html(reading: Reading | None, n_runs: int) -> str:
    """The report's first section in HTML (empty without a reading)."""
    if reading is None:
        return ""
    stale = stale_note(reading, n_runs)
    note = f'<p class="stale"><strong>{html.escape(stale)}</strong></p>' if stale else ""
    return f'<h2>{HEADING}</h2><div id="reading">{note}{reading_html(reading.text)}</div>'
