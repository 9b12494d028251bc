"""Durable acknowledgement against a real standby: streaming, synchronous, stopped."""

from __future__ import annotations

import json
import time

import pytest
from django.db import connections
from django.test import Client

from django_pg_resilience import stats
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
from django_pg_resilience.testing.webhooks import shopify_request
from django_pg_resilience.webhooks.durability import current_wal_position, wait_for_standby_flush
from tests.webhooks.views import (
    FRESH_ALIAS,
    SHOPIFY_SECRET,
    FreshDurableSessionLost,
    calls,
)

pytestmark = [pytest.mark.urls("tests.webhooks.urls")]


def deliver(client: Client, path: str, webhook_id: str) -> tuple[int, dict[str, str], object]:
    delivery = shopify_request({"id": webhook_id}, SHOPIFY_SECRET, webhook_id=webhook_id)
    response = client.post(path, **delivery.client_kwargs())
    return response.status_code, json.loads(response.content), response


def test_streaming_and_synchronous_standbys_confirm(
    fresh_alias: LocalCluster, client: Client
) -> None:
    cluster = fresh_alias
    standby = cluster.standbys[0]

    status, body, _ = deliver(client, "/fresh/durable", "streaming")
    assert (status, body) == (200, {"status": "processed"})
    assert stats.snapshot()["webhooks_durable_ack_waits"] == {"shopify": 1}

    # A synchronous standby flushed before COMMIT returned: the first check passes,
    # so even a zero wait confirms.
    cluster.set_synchronous(standby)
    try:
        status, body, _ = deliver(client, "/fresh/durable-no-wait", "synchronous")
        assert (status, body) == (200, {"status": "processed"})
    finally:
        cluster.set_synchronous(None)
    assert "webhooks_durable_ack_timeouts" not in stats.snapshot()

    # Asking a standby alias directly works the same way.
    standby_options = {"connect_timeout": 2, "resilience": {"read_write": False}}
    with database_alias("webhooks_standby", standby, OPTIONS=standby_options):
        lsn = current_wal_position(FRESH_ALIAS)
        assert wait_for_standby_flush(FRESH_ALIAS, lsn, timeout=10, standby="webhooks_standby")
        (far,) = cluster.primary.query("SELECT (pg_current_wal_insert_lsn() + 1000000000)::text")[0]
        assert not wait_for_standby_flush(FRESH_ALIAS, far, timeout=0.1, standby="webhooks_standby")


def test_stopped_standby_gets_503_after_the_bound_and_the_retry_is_deduplicated(
    fresh_alias: LocalCluster, client: Client
) -> None:
    cluster = fresh_alias
    standby = cluster.standbys[0]
    cluster.stop(standby, "fast")

    started = time.monotonic()
    status, body, response = deliver(client, "/fresh/durable", "unconfirmed")
    elapsed = time.monotonic() - started

    assert (status, body) == (503, {"error": "durable_ack_unconfirmed"})
    assert int(response["Retry-After"]) >= 1  # type: ignore[index]
    assert elapsed >= 0.5  # the view's durable_ack_timeout: it did wait
    assert stats.snapshot()["webhooks_durable_ack_timeouts"] == {"shopify": 1}
    # The event is committed; only the acknowledgement was withheld.
    event = WebhookEvent.objects.using(FRESH_ALIAS).get(key="unconfirmed")
    assert event.status == WebhookEvent.Status.SUCCEEDED

    cluster.start(standby)
    deadline = time.monotonic() + 30
    while True:
        status, body, _ = deliver(client, "/fresh/durable", "unconfirmed")
        if status == 200 or time.monotonic() > deadline:
            break
    assert (status, body) == (200, {"status": "duplicate"})
    assert calls.keys == ["unconfirmed"]
    connections[FRESH_ALIAS].close()


def test_a_confirmation_from_another_session_than_the_committing_one_does_not_count(
    fresh_alias: LocalCluster, client: Client
) -> None:
    """After a failover the backend re-runs the durability reads on a new session (a new
    primary, whose standby would confirm a position the commit never reached): such an
    answer must not acknowledge the delivery. Cutting the session between COMMIT and the
    check makes the same switch happen deterministically."""
    cluster = fresh_alias
    FreshDurableSessionLost.lose_session = cluster.endpoint.reset_all
    try:
        status, body, response = deliver(client, "/fresh/durable-session-lost", "switched")
    finally:
        FreshDurableSessionLost.lose_session = None
    assert (status, body["error"]) == (503, "durable_ack_unconfirmed")
    assert int(response["Retry-After"]) >= 1

    # The sender's retry is deduplicated and, on an unbroken session, confirmed.
    status, body, _ = deliver(client, "/fresh/durable-session-lost", "switched")
    assert (status, body) == (200, {"status": "duplicate"})
    assert WebhookEvent.objects.using(FRESH_ALIAS).filter(key="switched").count() == 1
