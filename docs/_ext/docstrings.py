"""A Griffe extension for the API pages (mkdocs.yml): makes xaigan's docstrings read well as Markdown.

The docstrings are written for ``help()`` and editors, with reStructuredText habits that Markdown shows literally.
Before mkdocstrings renders them, this rewrites (for the site only; the source is untouched):

* roles such as ``:func:`explain``` into links to the object when the site documents it (plain code otherwise);
* doctest lines (``>>> ...`` and their output) into fenced ``pycon`` blocks, where Markdown would make them quotes;
* a literal-block marker (a paragraph ending in ``::``) into a plain colon (the indented block is code anyway);
* a plain mention of a docs page (``docs/benchmarks.md``, outside code) into a link to that page.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import griffe

DOCS = Path(__file__).resolve().parent.parent
PAGE = re.compile(r"(?<![\w/`.])docs/(?P<page>[\w./-]+?)\.md(?![\w`])")
ROLE = re.compile(r":(?:py:)?(?P<role>func|class|meth|mod|data|attr|exc|obj|const):`(?P<target>[^`]+)`")


def _resolve(obj: griffe.Object, role: str, target: str) -> str | None:
    """The path of ``target`` as seen from ``obj``, or None: a method or attribute is looked up from the class
    outwards, anything else from the module outwards (each enclosing scope in turn)."""
    if target.startswith("xaigan."):
        return target
    scope: Any = (obj if obj.is_class else obj.parent) if role in ("meth", "attr") else obj.module
    while scope is not None:
        try:
            found = scope[target]
        except Exception:  # not found here (KeyError), or an alias that does not resolve
            scope = scope.parent
            continue
        return found.path
    return None


def _roles(obj: griffe.Object, text: str) -> str:
    def link(match: re.Match) -> str:
        target = match["target"].strip()
        shown = target.lstrip("~.")
        if target.startswith("~"):
            shown = shown.rsplit(".", 1)[-1]
        code = f"<code>{html.escape(shown)}</code>"
        path = _resolve(obj, match["role"], target.lstrip("~."))
        if path is None:
            return code
        return f'<autoref optional identifier="{html.escape(path)}">{code}</autoref>'

    return ROLE.sub(link, text)


def _fence_doctests(text: str) -> str:
    """Wrap each run of doctest lines (a ``>>>`` line up to the next blank line) in a ``pycon`` fence."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            out += [f"{indent}```pycon", *block, f"{indent}```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _literal_markers(text: str) -> str:
    """``text::`` before an indented block becomes ``text:`` (Markdown has no literal-block marker)."""
    return re.sub(r"(?<=\S)::\n(?=\s*\n)", ":\n", text)


def _page_links(text: str) -> str:
    """``docs/PAGE.md`` -> a link to that page (the API pages are one folder down), where the page exists."""

    def link(match: re.Match) -> str:
        page = match["page"]
        if not (DOCS / f"{page}.md").is_file():
            return match[0]
        return f"[{match[0]}](../{page}.md)"

    return PAGE.sub(link, text)


def rewrite(obj: griffe.Object, text: str) -> str:
    """The docstring ``text`` of ``obj`` as the API pages show it."""
    if "```" not in text:  # a docstring that fences its own code is left to it
        text = _fence_doctests(text)
    return _page_links(_literal_markers(_roles(obj, text)))


class XaiganDocstrings(griffe.Extension):
    """Rewrites every docstring of the loaded package once it is loaded (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[Any] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.is_alias or id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj, obj.docstring.value)
            stack.extend(obj.members.values())
