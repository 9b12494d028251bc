"""Durable acknowledgement against a real standby: streaming, synchronous, stopped."""

from __future__ import annotations

import json
import logging
import select
import time

import psycopg
import pytest
from django.db import connections
from django.test import Client

from django_pg_resilience import stats
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
from django_pg_resilience.testing.webhooks import shopify_request
from django_pg_resilience.webhooks.durability import (
    current_wal_position,
    current_wal_position_if_flushed,
    wait_for_standby_flush,
)
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

    assert (status, body["error"]) == (503, "durable_ack_unconfirmed")
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


def test_a_session_lost_as_the_transaction_closes_does_not_confirm(
    fresh_alias: LocalCluster, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COMMIT succeeds, then the session dies before the view regains control: Django,
    restoring autocommit as the atomic block closes, finds the connection dead and
    reconnects. That new session (on a new primary, in a failover) must not be the
    one whose confirmation counts."""
    cluster = fresh_alias
    wrapper = connections[FRESH_ALIAS]
    commit = wrapper._commit
    cut: list[bool] = []

    def commit_then_lose_the_session() -> None:
        commit()
        if not cut:
            cut.append(True)
            raw = wrapper.connection
            cluster.endpoint.reset_all()
            # Until the reset has reached this side, as a crash's would.
            assert select.select([raw.fileno()], [], [], 5)[0]

    monkeypatch.setattr(wrapper, "_commit", commit_then_lose_the_session)
    status, body, _ = deliver(client, "/fresh/durable", "lost-at-close")
    monkeypatch.undo()

    assert cut
    assert (status, body["error"]) == (503, "durable_ack_unconfirmed")
    # Committed all the same: the sender's retry is a confirmed duplicate.
    status, body, _ = deliver(client, "/fresh/durable", "lost-at-close")
    assert (status, body) == (200, {"status": "duplicate"})


#: WAL page headers: the first page of a segment has the long one.
_PAGE_HEADER, _SEGMENT_HEADER = 24, 40


def _lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def _commit_ending_at_a_page_boundary(dsn: str) -> int:
    """Commit a transaction whose commit record ends exactly where a WAL page ends.

    Returns that boundary. One transaction (a logical message of n bytes, then
    its commit) is measured within a page, then repeated with n chosen to fill
    the rest of the current page exactly.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:

        def insert_position() -> int:
            row = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
            assert row is not None
            return int(row[0])

        def commit_message(size: int) -> None:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_logical_emit_message(true, 'durable-ack-test', repeat('x', %s))",
                    [size],
                )

        row = conn.execute("SELECT current_setting('wal_block_size')::int").fetchone()
        assert row is not None
        page = int(row[0])
        probe = 300  # over 255 bytes: the record's data length field has one size from here on
        for _ in range(100):
            before = insert_position()
            commit_message(probe)
            after = insert_position()
            if before // page != after // page:
                continue  # crossed into a new page (a header inside): measure again
            fill = probe + (page - after % page) - (after - before)
            if fill < probe:
                continue  # the rest of this page is too small for one more
            commit_message(fill)
            end = insert_position()
            if end % page in (_PAGE_HEADER, _SEGMENT_HEADER):
                return end - end % page
    raise AssertionError("could not end a commit exactly on a WAL page boundary")


def test_a_commit_ending_on_a_wal_page_boundary_is_confirmed_without_more_wal(
    fresh_alias: LocalCluster,
) -> None:
    """pg_current_wal_insert_lsn() after such a commit points past the next page's
    header, where no standby gets until more WAL is written: on a quiet server the
    acknowledgement would wait for the whole bound and answer 503."""
    cluster = fresh_alias
    connections[FRESH_ALIAS].ensure_connection()
    for _ in range(5):
        boundary = _commit_ending_at_a_page_boundary(cluster.primary.dsn)
        lsn = current_wal_position(FRESH_ALIAS)
        ((unchanged,),) = cluster.primary.query(
            "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn - %s < %s", [boundary, 41]
        )
        if unchanged:  # no background process wrote WAL in between
            break
    assert lsn == _lsn(boundary)
    assert wait_for_standby_flush(FRESH_ALIAS, lsn, timeout=10)
    assert current_wal_position_if_flushed(FRESH_ALIAS) == (lsn, True, True)


def test_relaxed_policy_acknowledges_while_no_standby_streams_counted_and_logged_once(
    fresh_alias: LocalCluster, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """durable_ack_without_standby: 200 at once with no standby; strict waits, then 503."""
    cluster = fresh_alias
    standby = cluster.standbys[0]
    cluster.stop(standby, "fast")
    caplog.set_level(logging.WARNING, logger="django_pg_resilience.webhooks")

    started = time.monotonic()
    strict = deliver(client, "/fresh/durable", "strict-1")
    strict_seconds = time.monotonic() - started
    started = time.monotonic()
    relaxed = [deliver(client, "/fresh/durable-relaxed", f"relaxed-{i}") for i in range(3)]
    relaxed_seconds = (time.monotonic() - started) / 3

    assert strict[:2] == (503, {"error": "durable_ack_unconfirmed", "retry_after": 5})
    assert [reply[:2] for reply in relaxed] == [(200, {"status": "processed"})] * 3
    # No wait for a standby that is not there (strict waited its 0.5 s bound).
    assert relaxed_seconds < strict_seconds
    assert stats.snapshot()["webhooks_durable_ack_without_standby"] == {"shopify": 3}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len([e for e in errors if "no standby is streaming" in e]) == 1

    cluster.start(standby)
    deadline = time.monotonic() + 30
    while True:
        status, _, _ = deliver(client, "/fresh/durable", f"back-{time.monotonic()}")
        if status == 200 or time.monotonic() > deadline:
            break
    assert status == 200
    assert deliver(client, "/fresh/durable-relaxed", "relaxed-after")[:2] == (
        200,
        {"status": "processed"},
    )
    # Confirmed by the standby again: not counted as acknowledged without one.
    assert stats.snapshot()["webhooks_durable_ack_without_standby"] == {"shopify": 3}
    connections[FRESH_ALIAS].close()
