"""The webhook hand-over: a queued event's pk goes to the queue once its row commits."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from django.test import Client

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.webhooks import shopify_request
from django_pg_resilience.webhooks.dispatch import process_event, seconds_until_due
from tests.jobs import views
from tests.jobs.conftest import StartWorker, wait_ready
from tests.jobs.jobs import JOBS_ALIAS
from tests.testapp.models import ChaosOrder

pytestmark = pytest.mark.urls("tests.jobs.views")

Status = WebhookEvent.Status


@pytest.fixture(autouse=True)
def fresh_lists() -> Iterator[None]:
    views.handed_over.clear()
    views.failures.clear()
    yield
    views.failures.clear()


def deliver(client: Client, url: str, order_id: int, webhook_id: str) -> str:
    delivery = shopify_request({"id": order_id}, views.SHOPIFY_SECRET, webhook_id=webhook_id)
    response = client.post(url, **delivery.client_kwargs())
    assert response.status_code == 200, response.content
    return str(json.loads(response.content)["status"])


def orders() -> Counter[int]:
    return Counter(ChaosOrder.objects.using(JOBS_ALIAS).values_list("shop_order_id", flat=True))


def test_a_queued_event_is_handed_over_once_and_processed_once(
    jobs_cluster: LocalCluster, client: Client
) -> None:
    assert deliver(client, "/collected", 7, "hook-7") == "queued"
    assert deliver(client, "/collected", 7, "hook-7") == "duplicate"
    event = WebhookEvent.objects.using(JOBS_ALIAS).get()
    assert views.handed_over == [event.pk]
    processed = process_event(event.pk, using=JOBS_ALIAS)
    assert processed is not None and processed.status == Status.SUCCEEDED
    # A second delivery of the task (a redelivery, a duplicate) finds nothing to do.
    assert process_event(event.pk, using=JOBS_ALIAS) is None
    assert orders() == Counter([7])


def test_a_failing_handler_is_recorded_with_a_backoff_and_a_later_run_succeeds(
    jobs_cluster: LocalCluster, client: Client
) -> None:
    assert deliver(client, "/collected", 8, "hook-8") == "queued"
    (pk,) = views.handed_over
    views.failures.append(RuntimeError("the warehouse API said no"))
    processed = process_event(pk, using=JOBS_ALIAS, backoff=30.0)
    assert processed is not None and processed.pending
    assert 0 < seconds_until_due(processed) <= 30
    event = WebhookEvent.objects.using(JOBS_ALIAS).get()
    assert event.attempts == 1 and "warehouse API" in event.last_error
    assert orders() == Counter()
    views.failures.clear()
    processed = process_event(pk, using=JOBS_ALIAS)
    assert processed is not None and processed.status == Status.SUCCEEDED
    assert orders() == Counter([8])


@pytest.mark.slow
def test_the_celery_worker_processes_each_handed_over_event_once(
    start_worker: StartWorker, client: Client
) -> None:
    hooks = [(order_id, str(uuid.uuid4())) for order_id in range(1, 16)]
    with start_worker() as worker:
        wait_ready(worker)
        for order_id, hook in hooks + hooks[::3]:
            deliver(client, "/celery", order_id, hook)
        deadline = time.monotonic() + 60
        pending = WebhookEvent.objects.using(JOBS_ALIAS).exclude(status=Status.SUCCEEDED)
        while pending.exists():
            assert time.monotonic() < deadline, f"events still pending\n{worker.tail()}"
            time.sleep(0.1)
    assert orders() == Counter(range(1, 16))
