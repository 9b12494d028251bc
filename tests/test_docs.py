"""The documentation site builds strictly, and every page under docs/ is reachable.

`mkdocs build --strict` with mkdocs.yml's `validation` settings turns a broken link, a missing
anchor, or a page left out of the nav into a failed build; the nav and README checks here also
run where mkdocs is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIG = ROOT / "mkdocs.yml"


def _nav_pages(entries: Any) -> list[str]:
    if isinstance(entries, str):
        return [entries]
    if isinstance(entries, list):
        return [page for entry in entries for page in _nav_pages(entry)]
    if isinstance(entries, dict):
        return [page for value in entries.values() for page in _nav_pages(value)]
    return []


def _nav() -> list[str]:
    class ConfigLoader(yaml.SafeLoader):
        """Reads mkdocs.yml without building the Python objects its `!!python/` tags name."""

    ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *_: None)
    # A SafeLoader whose only addition builds nothing: safe, though ruff cannot see it.
    config = yaml.load(CONFIG.read_text(encoding="utf-8"), Loader=ConfigLoader)  # noqa: S506
    return _nav_pages(config["nav"])


def _docs_pages() -> set[str]:
    return {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}


def test_every_page_under_docs_is_in_the_nav() -> None:
    nav = _nav()
    assert sorted(_docs_pages() - set(nav)) == [], "add these pages to mkdocs.yml's nav"
    assert sorted(set(nav) - _docs_pages()) == [], "the nav names pages docs/ does not have"
    assert len(nav) == len(set(nav)), "a page is in the nav twice"


def test_the_readme_links_every_reference_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(docs/([^)#]+\.md)(?:#[^)]*)?\)", readme))
    stand_ins = {"index.md", "changelog.md"}
    assert sorted(_docs_pages() - stand_ins - linked) == [], "link these from README.md"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    for package in ("mkdocs", "material"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed: pip install -e '.[docs]'")
    site = tmp_path / "site"
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(CONFIG)]
    result = subprocess.run(
        [*build, "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'id="add-it-to-your-project"' in home, "the home page is not the README"
    assert 'href="backend/"' in home, "README's docs/ links were not made relative to docs/"
    changelog = (site / "changelog" / "index.html").read_text(encoding="utf-8")
    assert 'id="unreleased"' in changelog, "the changelog page is not CHANGELOG.md"
