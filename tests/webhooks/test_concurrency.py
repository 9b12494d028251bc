"""Concurrent identical deliveries through a real threaded HTTP server."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction
from django.test import Client, override_settings

from django_pg_resilience import stats
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing.webhooks import shopify_request
from tests.live_server import Reply, live_server, send
from tests.testapp.models import Item
from tests.webhooks.views import SHOPIFY_SECRET, calls

pytestmark = [pytest.mark.urls("tests.webhooks.urls"), pytest.mark.django_db(transaction=True)]

DELIVERIES = 50


def lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


# Duplicates wait on the first delivery for as long as the test holds it.
@override_settings(PG_RESILIENCE={"WEBHOOK_LOCK_TIMEOUT": 60.0})
def test_fifty_concurrent_identical_deliveries_take_effect_once() -> None:
    delivery = shopify_request({"id": 5001}, SHOPIFY_SECRET, webhook_id="same-instant")
    calls.block = True  # the first handle() holds its transaction open until released
    start = threading.Barrier(DELIVERIES)

    with live_server() as url:

        def deliver(_: int) -> Reply:
            start.wait(10)
            return send(delivery.urllib_request(url + "/shopify/orders"))

        with ThreadPoolExecutor(DELIVERIES) as pool:
            futures = [pool.submit(deliver, i) for i in range(DELIVERIES)]
            assert calls.entered.wait(20), "no delivery reached handle()"
            # Let the duplicates pile up on the unique index while the first is
            # inside handle(); poll with a deadline, release whatever happened.
            deadline = time.monotonic() + 15
            while lock_waiters() < DELIVERIES - 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            waiting = lock_waiters()
            calls.proceed.set()
            replies = [future.result(60) for future in futures]

    statuses = [(reply.status, json.loads(reply.body).get("status")) for reply in replies]
    assert statuses.count((200, "processed")) == 1
    assert statuses.count((200, "duplicate")) == DELIVERIES - 1
    assert calls.keys == ["same-instant"]
    assert WebhookEvent.objects.count() == 1
    assert Item.objects.filter(name="shopify:same-instant").count() == 1
    # Most duplicates were really concurrent (blocked on the index), not late.
    assert waiting >= DELIVERIES // 2, f"only {waiting} deliveries overlapped"


def test_a_concurrent_duplicate_processes_the_event_when_the_first_rolls_back() -> None:
    delivery = shopify_request({"id": 5002}, SHOPIFY_SECRET, webhook_id="first-fails")
    calls.block = True
    calls.fail_first = RuntimeError("the first attempt breaks after its insert")

    with live_server() as url, ThreadPoolExecutor(2) as pool:
        first = pool.submit(send, delivery.urllib_request(url + "/shopify/orders"))
        assert calls.entered.wait(20), "the first delivery never reached handle()"
        second = pool.submit(send, delivery.urllib_request(url + "/shopify/orders"))
        deadline = time.monotonic() + 15
        while lock_waiters() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        overlapped = lock_waiters() >= 1
        calls.proceed.set()
        first_reply, second_reply = first.result(60), second.result(60)

    assert overlapped, "the second delivery did not wait on the first one's insert"
    assert (first_reply.status, json.loads(first_reply.body)) == (500, {"error": "handler_failed"})
    assert (second_reply.status, json.loads(second_reply.body)) == (200, {"status": "processed"})
    event = WebhookEvent.objects.get()
    # The failure record never overwrites the duplicate's success.
    assert (event.status, event.attempts) == (WebhookEvent.Status.SUCCEEDED, 1)
    assert calls.keys == ["first-fails", "first-fails"]
    assert Item.objects.filter(name="shopify:first-fails").count() == 1


@override_settings(PG_RESILIENCE={"WEBHOOK_LOCK_TIMEOUT": 0.3})
def test_a_duplicate_of_a_hung_delivery_gets_a_503_once_the_lock_timeout_passes() -> None:
    """A hung handler must not pin one web worker per sender retry."""
    delivery = shopify_request({"id": 5002}, SHOPIFY_SECRET, webhook_id="hung")
    calls.block = True
    with live_server() as url, ThreadPoolExecutor(1) as pool:
        first = pool.submit(send, delivery.urllib_request(url + "/shopify/orders"))
        assert calls.entered.wait(20), "the first delivery never reached handle()"
        started = time.monotonic()
        duplicate = send(delivery.urllib_request(url + "/shopify/orders"))
        waited = time.monotonic() - started
        calls.proceed.set()
        original = first.result(60)

    assert duplicate.status == 503, duplicate.body
    assert json.loads(duplicate.body)["error"] == "delivery_in_flight"
    assert int(duplicate.headers["Retry-After"]) >= 1
    assert "no-store" in duplicate.headers["Cache-Control"]
    assert waited < 20  # bounded by lock_timeout, not by the hung handler
    assert (original.status, json.loads(original.body)) == (200, {"status": "processed"})
    assert calls.keys == ["hung"] and Item.objects.count() == 1
    assert stats.snapshot()["webhooks_in_flight_timeouts"] == {"shopify": 1}


@override_settings(PG_RESILIENCE={"WEBHOOK_LOCK_TIMEOUT": 0.3})
def test_a_retry_that_re_arms_a_failed_event_someone_holds_gets_a_503_not_a_wait() -> None:
    """The re-arm UPDATE of a queued view bounds its wait on a locked row like the insert."""
    delivery = shopify_request({"id": 5003}, SHOPIFY_SECRET, webhook_id="held")
    WebhookEvent.objects.create(source="shopify", key="held", status=WebhookEvent.Status.FAILED)
    locked, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:  # a worker or an admin replay in the middle of the event
        try:
            with transaction.atomic():
                WebhookEvent.objects.select_for_update().get(key="held")
                locked.set()
                release.wait(20)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    try:
        assert locked.wait(20), "the holder never locked the row"
        response = Client().post("/shopify/async", **delivery.client_kwargs())
    finally:
        release.set()
        holder.join(30)

    assert (response.status_code, response.json()["error"]) == (503, "delivery_in_flight")
    assert WebhookEvent.objects.get(key="held").status == WebhookEvent.Status.FAILED
