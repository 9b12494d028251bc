"""The suite's database: the plugin's session cluster, behind its endpoint proxy."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from django_pg_resilience.testing import EndpointProxy


def pytest_configure(config: pytest.Config) -> None:
    # Every skip listed at the end, and a failure under CI (tests/skip_policy.py).
    if not config.pluginmanager.has_plugin("tests.skip_policy"):
        config.pluginmanager.import_plugin("tests.skip_policy")
    # A suite started in the background (`cmd &`, nohup) inherits an ignored SIGINT, and so
    # would every process it starts: the commands whose Ctrl-C the tests press would rightly
    # keep ignoring it. The tests stand where a user at a terminal stands.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(pg_session_endpoint: EndpointProxy) -> Iterator[None]:
    """pytest-django calls this before creating the test database."""
    settings.DATABASES["default"].update(
        HOST=pg_session_endpoint.host, PORT=str(pg_session_endpoint.port)
    )
    yield


@pytest.fixture
def live_url() -> Iterator[str]:
    """This process's Django, served over HTTP on 127.0.0.1 by a thread."""
    from tests.live_server import live_server

    with live_server() as url:
        yield url


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A new page in a headless Chromium, closed after the test."""
    from tests.browser import CHROMIUM, CHROMIUM_FLAGS, require_browser

    api = require_browser()
    with api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()
