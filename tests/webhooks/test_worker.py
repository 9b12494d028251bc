"""Async mode: store and acknowledge at once; the worker runs handle() exactly once."""

from __future__ import annotations

import datetime
import json
import os
import signal
import threading
import time

import pytest
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.utils import timezone

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing.webhooks import shopify_request
from django_pg_resilience.webhooks.worker import backoff_delay, process_due
from tests.testapp.models import Item
from tests.webhooks.views import SHOPIFY_SECRET, calls

pytestmark = [pytest.mark.urls("tests.webhooks.urls"), pytest.mark.django_db(transaction=True)]

Status = WebhookEvent.Status


def queue(client: Client, webhook_id: str) -> tuple[int, dict[str, str]]:
    delivery = shopify_request({"id": webhook_id}, SHOPIFY_SECRET, webhook_id=webhook_id)
    response = client.post("/shopify/async", **delivery.client_kwargs())
    return response.status_code, json.loads(response.content)


def test_async_delivery_is_stored_pending_and_acknowledged_without_handle(client: Client) -> None:
    assert queue(client, "a-1") == (200, {"status": "queued"})
    assert queue(client, "a-1") == (200, {"status": "duplicate"})
    event = WebhookEvent.objects.get()
    assert event.status == Status.PENDING and event.attempts == 0
    assert event.handler == "tests.webhooks.views.ShopifyAsync"
    assert calls.keys == []


def test_two_concurrent_workers_process_each_pending_event_once(client: Client) -> None:
    keys = [f"w-{i}" for i in range(30)]
    for key in keys:
        assert queue(client, key)[0] == 200
    start = threading.Barrier(2)
    results = []

    def work() -> None:
        start.wait(10)
        try:
            results.append(process_due("default", max_attempts=3, backoff=1.0))
        finally:
            connections.close_all()

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)

    assert sorted(calls.keys) == sorted(keys)  # each exactly once, none skipped
    assert sum(r.succeeded for r in results) == len(keys)
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {Status.SUCCEEDED}
    assert Item.objects.count() == len(keys)
    assert queue(client, "w-0") == (200, {"status": "duplicate"})


def test_failing_handler_backs_off_then_fails_after_max_attempts(client: Client) -> None:
    queue(client, "flaky")
    calls.fail_with = RuntimeError("downstream is down")

    first = process_due("default", max_attempts=2, backoff=60.0)
    event = WebhookEvent.objects.get()
    assert (first.retried, event.status, event.attempts) == (1, Status.PENDING, 1)
    # Full jitter: the retry is due within the first step, not before the attempt.
    assert event.next_attempt_at is not None
    assert timezone.now() - datetime.timedelta(seconds=5) < event.next_attempt_at
    assert event.next_attempt_at <= timezone.now() + datetime.timedelta(seconds=60)
    assert event.locked_until is None
    assert "downstream is down" in event.last_error
    WebhookEvent.objects.update(next_attempt_at=timezone.now() + datetime.timedelta(minutes=1))
    assert process_due("default", max_attempts=2, backoff=60.0).total == 0  # not due yet

    WebhookEvent.objects.update(next_attempt_at=timezone.now())
    second = process_due("default", max_attempts=2, backoff=60.0)
    event.refresh_from_db()
    assert (second.failed, event.status, event.attempts) == (1, Status.FAILED, 2)
    assert Item.objects.count() == 0

    # The sender's retry of a failed event re-arms it; the worker then succeeds.
    calls.fail_with = None
    assert queue(client, "flaky") == (200, {"status": "queued"})
    assert process_due("default", max_attempts=2, backoff=60.0).succeeded == 1
    event.refresh_from_db()
    assert event.status == Status.SUCCEEDED and Item.objects.count() == 1


def test_management_command_once(client: Client) -> None:
    queue(client, "cmd-1")
    call_command("process_webhooks", "--once", verbosity=0)
    assert WebhookEvent.objects.get().status == Status.SUCCEEDED
    assert calls.keys == ["cmd-1"]


def test_the_loop_ends_on_ctrl_c_and_gives_the_callers_signal_handlers_back(
    client: Client,
) -> None:
    queue(client, "loop-1")
    seen: list[int] = []

    def callers_handler(signum: int, frame: object) -> None:
        seen.append(signum)

    def ctrl_c_once_processed() -> None:
        deadline = time.monotonic() + 30
        while calls.keys != ["loop-1"] and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    before = {s: signal.signal(s, callers_handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        threading.Thread(target=ctrl_c_once_processed, daemon=True).start()
        call_command("process_webhooks", "--interval", "0.05", verbosity=0)  # returns on Ctrl-C
        assert signal.getsignal(signal.SIGINT) is callers_handler
        assert signal.getsignal(signal.SIGTERM) is callers_handler
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    assert calls.keys == ["loop-1"]
    assert seen == []  # the worker's handler took the Ctrl-C, not the caller's


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_delay(n, 10.0) for n in (1, 2, 3, 4)] == [10.0, 20.0, 40.0, 80.0]
    assert backoff_delay(30, 10.0) == 3600.0


def test_an_event_failing_for_another_database_does_not_block_the_queue(client: Client) -> None:
    """A handler's DatabaseUnavailable for a second alias waits, without spending an attempt."""
    from django_pg_resilience.errors import DatabaseUnavailable

    queue(client, "poison")
    queue(client, "healthy")
    WebhookEvent.objects.filter(key="poison").update(
        next_attempt_at=timezone.now() - datetime.timedelta(minutes=1)
    )  # first in line
    calls.fail_first = DatabaseUnavailable("the reports database is down", alias="reports")

    result = process_due("default", max_attempts=2, backoff=60.0)

    poison = WebhookEvent.objects.get(key="poison")
    assert (result.succeeded, result.retried) == (1, 1)
    # An outage is not an attempt (docs/celery.md): given back, due again after a backoff.
    assert (poison.status, poison.attempts) == (Status.PENDING, 0)
    assert poison.next_attempt_at > timezone.now() + datetime.timedelta(seconds=25)
    assert "reports database is down" in poison.last_error
    assert WebhookEvent.objects.get(key="healthy").status == Status.SUCCEEDED


def test_a_worker_killed_in_the_handler_leaves_the_attempt_counted(client: Client) -> None:
    """SystemExit (a kill) rolls back the handler, not the lease: the event is not stuck first."""
    queue(client, "crash")
    calls.fail_with = SystemExit(1)

    for expected_attempts in (1, 2):
        with pytest.raises(SystemExit):
            process_due("default", max_attempts=2, backoff=1.0, lease=0.0)
        event = WebhookEvent.objects.get()
        assert (event.status, event.attempts) == (Status.PROCESSING, expected_attempts)
        assert event.locked_until is not None
    # Its lease expired with no attempt left: the next pass fails it instead of running it.
    result = process_due("default", max_attempts=2, backoff=1.0, lease=0.0)
    event = WebhookEvent.objects.get()
    assert (result.failed, event.status, event.attempts) == (1, Status.FAILED, 2)
    assert "lease expired" in event.last_error
    assert calls.keys == ["crash", "crash"]


def test_a_live_lease_is_not_taken_by_another_worker(client: Client) -> None:
    queue(client, "leased")
    calls.fail_with = SystemExit(1)
    with pytest.raises(SystemExit):
        process_due("default", max_attempts=3, backoff=1.0, lease=600.0)
    calls.fail_with = None
    assert process_due("default", max_attempts=3, backoff=1.0).total == 0
    assert WebhookEvent.objects.get().status == Status.PROCESSING


def test_worker_errors_mask_the_views_secrets(client: Client) -> None:
    queue(client, "leaky")
    calls.fail_with = RuntimeError(f"auth failed with {SHOPIFY_SECRET}")
    process_due("default", max_attempts=1, backoff=1.0)
    event = WebhookEvent.objects.get()
    assert event.status == Status.FAILED
    assert SHOPIFY_SECRET not in event.last_error and "***" in event.last_error
