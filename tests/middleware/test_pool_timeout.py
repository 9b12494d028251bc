"""A busy connection pool (psycopg_pool's PoolTimeout) is load, not an outage.

The pool is real: one connection, held by the test, so a request served by the
live server waits for the pool's timeout and gets a PoolTimeout.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import signals, stats
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
from tests.live_server import live_server, send

POOLED = "pooled_one_connection"


@pytest.fixture
def exhausted_pool(
    pg_cluster: LocalCluster, settings: SettingsWrapper, django_db_blocker: Any
) -> Iterator[str]:
    """An alias whose pool's only connection this thread holds."""
    pool = {"min_size": 1, "max_size": 1, "timeout": 0.2}
    with (
        django_db_blocker.unblock(),
        database_alias(POOLED, pg_cluster.primary, OPTIONS={"connect_timeout": 2, "pool": pool}),
    ):
        settings.MIDDLEWARE_TESTS_DATABASE = POOLED
        connections[POOLED].ensure_connection()
        try:
            yield POOLED
        finally:
            connections[POOLED].close()
            connections[POOLED].close_pool()


def test_a_busy_pool_gets_a_short_503_counted_apart_from_outages(
    exhausted_pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="django_pg_resilience.middleware")
    stats.reset()
    outages: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        outages.append(kwargs)

    signals.database_unavailable_response.connect(receiver)
    try:
        with live_server() as url:
            request = urllib.request.Request(  # noqa: S310 - the test's own server
                url + "/api/items/", headers={"Accept": "application/json"}
            )
            reply = send(request)
    finally:
        signals.database_unavailable_response.disconnect(receiver)

    assert reply.status == 503, reply.body
    assert reply.headers["Retry-After"] == "1"
    assert json.loads(reply.body) == {"error": "database_busy", "retry_after": 1}
    counts = stats.snapshot()
    assert counts["pool_timeouts"] == {exhausted_pool: 1}
    assert "unavailable_responses" not in counts
    assert outages == []
    lines = [r.getMessage() for r in caplog.records if r.name == "django_pg_resilience.middleware"]
    assert any("pool" in line and "busy" in line for line in lines), lines
    assert not any("unavailable" in line for line in lines), lines
