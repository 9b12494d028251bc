"""MkDocs hooks: the site's home page is README.md and its changelog is CHANGELOG.md.

Both files stay at the top of the repository, where GitHub and PyPI show them; the pages
docs/index.md and docs/changelog.md are stand-ins whose text this hook replaces with the real
file's, with links written for the repository root (``docs/backend.md``) made relative to
``docs/``, so the strict build checks them like any other page's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

PAGES_FROM_REPOSITORY_ROOT = {"index.md": "README.md", "changelog.md": "CHANGELOG.md"}

_LINK_TARGET = re.compile(r"\]\((?!https?://|#)([^)]+)\)")


def _relative_to_docs(target: str) -> str:
    if target.startswith("docs/"):
        return target.removeprefix("docs/")
    path, _, anchor = target.partition("#")
    for page, source in PAGES_FROM_REPOSITORY_ROOT.items():
        if path == source:
            return page + (f"#{anchor}" if anchor else "")
    return target


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    source = PAGES_FROM_REPOSITORY_ROOT.get(page.file.src_uri)
    if source is None:
        return markdown
    text = (Path(config.config_file_path).parent / source).read_text(encoding="utf-8")
    return _LINK_TARGET.sub(lambda m: f"]({_relative_to_docs(m.group(1))})", text)
