"""A real headless Chromium sees the 503 page, and the page's own retry brings it back."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.browser import SCREENSHOTS, require_browser
from tests.middleware.conftest import Outage
from tests.middleware.views import REAL_CONTENT

SCREENSHOT = SCREENSHOTS / "middleware-503.png"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

require_browser()


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
