"""A real headless Chromium sees the maintenance page, and lands on the site once it is off."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import maintenance
from tests.browser import SCREENSHOTS, require_browser
from tests.middleware.views import REAL_CONTENT

SCREENSHOT = SCREENSHOTS / "maintenance-503.png"
MESSAGE = "We are moving the database to a bigger machine; back by 14:00 UTC."

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


require_browser()


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
