"""A real headless Chromium (Debian's, driven by Playwright) for the tests that look at a page.

``pytest_plugins``-free: a test module imports :func:`require_browser` at its
top (skipping where there is no browser) and uses the fixtures ``live_url``
and ``browser_page`` from ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
#: The flags a root, offline machine needs (no sandbox, no background networking).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where the tests' screenshots go.
SCREENSHOTS = Path(__file__).resolve().parents[1] / "out"


def require_browser() -> Any:
    """Playwright's sync API; skip the calling module where Chromium or Playwright is missing."""
    api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium; .ci/bootstrap.py "
            "installs it when run as root)",
            allow_module_level=True,
        )
    return api
