"""The chaos suite's small shop: a storefront read, an order webhook, an order worker.

Everything writes to the ``CHAOS_ALIAS`` database, which each test points at
its own cluster (through the endpoint proxy, or PgBouncer in front of it).
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.urls import path

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.retry import atomic_with_retry
from django_pg_resilience.webhooks import ShopifyWebhookView, durability
from tests.testapp.models import ChaosLedgerEntry, ChaosOrder

CHAOS_ALIAS = "chaos"
SHOPIFY_SECRET = "shpss_chaos_suite_secret_5f1e0c"


def storefront(request: HttpRequest) -> JsonResponse:
    """A read-only page: what a shop's product page costs the database."""
    return JsonResponse({"orders": ChaosOrder.objects.using(CHAOS_ALIAS).count()})


class OrderWebhook(ShopifyWebhookView):
    """orders/create: one ChaosOrder per event; acknowledged once a standby has it."""

    secrets: ClassVar[list[str]] = [SHOPIFY_SECRET]
    using: ClassVar[str | None] = CHAOS_ALIAS
    durable_ack: ClassVar[bool] = True
    durable_ack_timeout: ClassVar[float | None] = 1.0

    def handle(self, event: WebhookEvent) -> None:
        payload: Any = event.payload
        ChaosOrder.objects.using(CHAOS_ALIAS).create(
            webhook_key=event.key, shop_order_id=int(payload["id"])
        )


class AsyncAckOrderWebhook(OrderWebhook):
    """The same handler acknowledged at COMMIT on the primary (asynchronous replication)."""

    durable_ack: ClassVar[bool] = False


def record_ledger_entry(token: str) -> Any:
    """The worker's unit of work: idempotent by its token, as retry.py asks.

    Returns the session its COMMIT runs on, read inside the transaction: once
    the block is left, restoring autocommit may already have replaced a
    connection found dead with one to another server.
    """
    ChaosLedgerEntry.objects.using(CHAOS_ALIAS).get_or_create(token=token)
    return connections[CHAOS_ALIAS].connection


def run_ledger_unit(token: str) -> bool:
    """Run the unit; True once a standby has flushed it (the worker's durable ack).

    Without the wait, a unit that returned can still vanish in a crash with
    asynchronous replication (the chaos suite saw it happen): the same hole
    durable_ack closes for webhooks.
    """
    # get_or_create by token: a second run after a commit of unknown fate changes nothing.
    committed_on = atomic_with_retry(record_ledger_entry, using=CHAOS_ALIAS, idempotent=True)(token)
    # The wait must be answered by the server that committed: after a failover
    # the backend transparently re-runs these reads on the new primary, whose
    # standby would "confirm" a commit that died with the old one.
    lsn = durability.current_wal_position(CHAOS_ALIAS)
    confirmed = durability.wait_for_standby_flush(CHAOS_ALIAS, lsn, timeout=1.0)
    return confirmed and connections[CHAOS_ALIAS].connection is committed_on


urlpatterns = [
    path("store", storefront),
    path("webhooks/orders", OrderWebhook.as_view()),
    path("webhooks/orders-async-ack", AsyncAckOrderWebhook.as_view()),
]
