"""The documentation site (mkdocs.yml): every page is in the navigation, and the site builds without a warning."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "mkdocs.yml"


def _config() -> dict:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def _nav_pages(node) -> list[str]:
    """Every page path in a mkdocs ``nav`` (nested sections; external links left out)."""
    if isinstance(node, str):
        return [] if "://" in node else [node]
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    return []


def _docs_dir(cfg: dict) -> Path:
    return ROOT / cfg.get("docs_dir", "docs")


def _excluded(cfg: dict) -> list[str]:
    """The ``exclude_docs`` entries, as folder or file prefixes relative to the docs folder."""
    lines = (cfg.get("exclude_docs") or "").splitlines()
    return [line.strip().strip("/") for line in lines if line.strip() and not line.strip().startswith("#")]


def test_every_nav_page_exists():
    cfg = _config()
    docs = _docs_dir(cfg)
    pages = _nav_pages(cfg["nav"])
    assert pages, "mkdocs.yml has no nav"
    missing = [page for page in pages if not (docs / page).is_file()]
    assert not missing, f"pages in mkdocs.yml's nav that do not exist under {docs.name}/: {missing}"
    repeated = sorted({page for page in pages if pages.count(page) > 1})
    assert not repeated, f"pages listed twice in the nav: {repeated}"


def test_every_docs_page_is_in_the_nav():
    cfg = _config()
    docs = _docs_dir(cfg)
    excluded = _excluded(cfg)
    in_nav = set(_nav_pages(cfg["nav"]))
    pages = sorted(path.relative_to(docs).as_posix() for path in docs.rglob("*.md"))
    pages = [page for page in pages if not any(page == e or page.startswith(f"{e}/") for e in excluded)]
    orphans = [page for page in pages if page not in in_nav]
    assert not orphans, f"pages under {docs.name}/ that no nav entry of mkdocs.yml reaches: {orphans}"


def test_api_pages_render_the_public_modules():
    cfg = _config()
    docs = _docs_dir(cfg)
    for module in ("explain", "settings", "guidance", "models", "train", "metrics", "experiments"):
        page = docs / "api" / f"{module}.md"
        assert page.is_file(), f"no API page {page}"
        assert f"::: xaigan.{module}\n" in page.read_text(encoding="utf-8"), f"{page} does not render xaigan.{module}"
        assert f"api/{module}.md" in _nav_pages(cfg["nav"])


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(CONFIG), "-d", str(site)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    for module in ("explain", "settings", "guidance", "models", "train", "metrics", "experiments"):
        html = (site / "api" / module / "index.html").read_text(encoding="utf-8")
        assert 'class="doc doc-heading"' in html, f"the API page of xaigan.{module} documents nothing"
    broken = []
    for page in site.rglob("*.html"):
        for src in re.findall(r'<img[^>]*\ssrc="([^"]+)"', page.read_text(encoding="utf-8")):
            if "://" in src or src.startswith("data:"):
                continue
            if not (page.parent / unquote(src.split("#")[0].split("?")[0])).resolve().is_file():
                broken.append(f"{page.relative_to(site)}: {src}")
    assert not broken, f"images the built site does not hold: {broken[:20]}"
