"""Webhook views whose queued events are handed to a task queue (module level: loaded by path)."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, ClassVar

from django.urls import path

from django_pg_resilience.contrib.celery import process_webhook_event
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.webhooks import ShopifyWebhookView
from tests.jobs.jobs import JOBS_ALIAS
from tests.testapp.models import ChaosOrder

SHOPIFY_SECRET = "shpss_celery_suite_secret_8c2d41"

#: The pks handed over by :class:`CollectedOrders`, in order.
handed_over: list[int] = []
#: Raised by the handler while set.
failures: list[Exception] = []


class CollectedOrders(ShopifyWebhookView):
    """Queued events go to a list: the hook's contract without a queue."""

    secrets: ClassVar[list[str]] = [SHOPIFY_SECRET]
    using: ClassVar[str | None] = JOBS_ALIAS
    process_async: ClassVar[bool] = True
    dispatch_to = handed_over.append

    def handle(self, event: WebhookEvent) -> None:
        if failures:
            raise failures[0]
        payload: Any = event.payload
        ChaosOrder.objects.using(JOBS_ALIAS).create(
            webhook_key=event.key, shop_order_id=int(payload["id"])
        )


class CeleryOrders(CollectedOrders):
    """Queued events go to the Celery worker's ``process_webhook_event``."""

    dispatch_to = functools.partial(process_webhook_event.delay, using=JOBS_ALIAS)


class GatedOrders(CollectedOrders):
    """The handler of an order whose payload names a gate waits at it (a file the test creates).

    ``<gate>.entered`` says the handler is running, inside its transaction: the
    test cuts the database then, and opens the gate (``<gate>.open``).
    """

    dispatch_to = None

    def handle(self, event: WebhookEvent) -> None:
        payload: Any = event.payload
        gate = payload.get("gate")
        if gate:
            Path(f"{gate}.entered").touch()
            deadline = time.monotonic() + 60
            while not Path(f"{gate}.open").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        super().handle(event)


class GatedCeleryOrders(GatedOrders):
    dispatch_to = functools.partial(process_webhook_event.delay, using=JOBS_ALIAS)


urlpatterns = [
    path("collected", CollectedOrders.as_view()),
    path("celery", CeleryOrders.as_view()),
    path("gated", GatedOrders.as_view()),
    path("gated-celery", GatedCeleryOrders.as_view()),
]
