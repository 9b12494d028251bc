"""A real headless Chromium sees the maintenance page, and lands on the site once it is off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import maintenance
from tests.live_server import live_server
from tests.middleware.test_browser import CHROMIUM, CHROMIUM_FLAGS, playwright_api
from tests.middleware.views import REAL_CONTENT

SCREENSHOT = Path(__file__).resolve().parents[2] / "out" / "maintenance-503.png"
MESSAGE = "We are moving the database to a bigger machine; back by 14:00 UTC."

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live_url() -> Iterator[str]:
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


def test_browser_sees_the_maintenance_page_then_the_site_when_it_is_off(
    live_url: str, browser_page: Any, settings: SettingsWrapper
) -> None:
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, "MAINTENANCE_CHECK_INTERVAL": 0.5}
    maintenance.turn_on(retry_after=1, message=MESSAGE)
    page = browser_page

    response = page.goto(f"{live_url}/shop/")

    assert response.status == 503
    assert response.headers["retry-after"] == "1"
    assert "no-store" in response.headers["cache-control"]
    assert "be right back" in page.locator("h1").inner_text()
    assert page.locator("#pg-resilience-message").inner_text() == MESSAGE
    assert page.locator("#pg-resilience-status").is_visible()
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    assert maintenance.turn_off()

    # The page polls with backoff and reloads itself: nothing here navigates.
    page.wait_for_selector(f"text={REAL_CONTENT}", timeout=30_000)
    assert page.url == f"{live_url}/shop/"
    assert SCREENSHOT.stat().st_size > 1000
