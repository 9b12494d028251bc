"""Fixtures of the 503 middleware's tests: settings, and an outage of the test database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience.errors import is_availability_error
from django_pg_resilience.testing import EndpointProxy, LocalCluster

MIDDLEWARE_PATH = "django_pg_resilience.middleware.DatabaseUnavailableMiddleware"
RETRY_AFTER = 3


@pytest.fixture(autouse=True)
def middleware_settings(settings: SettingsWrapper) -> SettingsWrapper:
    settings.ROOT_URLCONF = "tests.middleware.urls"
    settings.MIDDLEWARE = [
        MIDDLEWARE_PATH,
        *settings.MIDDLEWARE,
        "tests.middleware.middleware.QueryingMiddleware",
    ]
    # A short deadline keeps each failing request quick whichever backend is in place.
    settings.PG_RESILIENCE = {"DEADLINE": 0.5, "RETRY_AFTER": RETRY_AFTER}
    return settings


def wait_until_database_answers(alias: str = "default", timeout: float = 20.0) -> None:
    """Poll until ``alias`` runs a query again (a breaker may still be open for a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        connections[alias].close()
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
            return
        except Exception as exc:
            if not is_availability_error(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


class Outage:
    """The session endpoint refuses connections until :meth:`end`."""

    def __init__(self, endpoint: EndpointProxy, cluster: LocalCluster) -> None:
        self.endpoint = endpoint
        self.cluster = cluster
        self.active = False

    def begin(self) -> None:
        self.endpoint.point_to(None)
        connections.close_all()
        self.active = True

    def end(self) -> None:
        if self.active:
            self.endpoint.point_to(self.cluster.primary)
            self.active = False
            wait_until_database_answers()


@pytest.fixture
def outage(pg_endpoint: EndpointProxy, pg_cluster: LocalCluster) -> Iterator[Outage]:
    """The test database's endpoint, down for the test (up again before teardown flushes)."""
    current = Outage(pg_endpoint, pg_cluster)
    current.begin()
    try:
        yield current
    finally:
        current.end()


def assert_unavailable_headers(response: Any, retry_after: int | None = None) -> int:
    """Check the 503's headers; return its Retry-After.

    Retry-After is the breaker's next probe when the backend knows it, else the
    RETRY_AFTER setting: whole seconds, never 0.
    """
    assert response.status_code == 503
    seconds = int(response["Retry-After"])
    assert seconds >= 1
    if retry_after is not None:
        assert seconds == retry_after
    cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
    assert {"no-store", "no-cache", "must-revalidate", "private"} <= cache_control
    assert "Expires" in response
    assert "accept" in response["Vary"].lower()
    return seconds
