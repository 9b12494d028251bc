"""A real headless Chromium sees the 503 page, and the page's own retry brings it back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live_server import live_server
from tests.middleware.conftest import Outage
from tests.middleware.views import REAL_CONTENT

CHROMIUM = "/usr/bin/chromium"
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
SCREENSHOT = Path(__file__).resolve().parents[2] / "out" / "middleware-503.png"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])"
)
if not Path(CHROMIUM).exists():
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium; .ci/bootstrap.py "
        "installs it when run as root)",
        allow_module_level=True,
    )


@pytest.fixture
def live_url() -> Iterator[str]:
    """This process's Django, served over HTTP on 127.0.0.1 by a thread."""
    with live_server() as url:
        yield url


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_browser_sees_the_503_page_then_its_retry_lands_on_the_real_page(
    outage: Outage, live_url: str, browser_page: Any, settings: Any
) -> None:
    settings.PG_RESILIENCE = {"DEADLINE": 0.5, "RETRY_AFTER": 1}
    page = browser_page

    response = page.goto(f"{live_url}/shop/")

    assert response.status == 503
    assert response.headers["retry-after"].isdigit()
    assert "no-store" in response.headers["cache-control"]
    heading = page.locator("h1")
    assert "be right back" in heading.inner_text()
    assert page.locator("#pg-resilience-status").is_visible()
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Playwright's sync API runs an event loop in this thread, where Django
    # refuses database calls: end the outage from another thread.
    ended = threading.Thread(target=outage.end)
    ended.start()
    ended.join(timeout=60)
    assert not outage.active

    # The page polls with backoff and reloads itself: nothing here navigates.
    page.wait_for_selector(f"text={REAL_CONTENT}", timeout=30_000)
    assert page.url == f"{live_url}/shop/"
    assert SCREENSHOT.stat().st_size > 1000
