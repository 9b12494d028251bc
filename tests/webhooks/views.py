"""Webhook views the tests route to (module level: the async worker imports them by path)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

from django.db import connections, transaction

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.webhooks import (
    GitHubWebhookView,
    ShopifyWebhookView,
    StandardWebhookView,
)
from django_pg_resilience.webhooks.processing import Delivery
from tests.testapp.models import Item

SHOPIFY_SECRET = "shpss_current_secret_0123456789"
SHOPIFY_OLD_SECRET = "shpss_rotated_out_secret_9876543210"
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GITHUB_SECRET = "github-secret-for-tests"


class Calls:
    """Thread-safe record of handle() calls, with hooks a test can block on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: list[str] = []
        self.entered = threading.Event()
        self.proceed = threading.Event()
        self.block = False
        self.fail_with: BaseException | None = None
        self.fail_first: BaseException | None = None
        self.on_commit: list[str] = []
        self.atomic_depths: list[int] = []

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def record(self, event: WebhookEvent) -> None:
        with self.lock:
            self.keys.append(event.key)
            first = len(self.keys) == 1
        if self.block and first:
            self.entered.set()
            assert self.proceed.wait(30), "the test never released handle()"
        if self.fail_with is not None:
            raise self.fail_with
        if self.fail_first is not None and first:
            raise self.fail_first


calls = Calls()


def create_item(event: WebhookEvent, using: str) -> None:
    Item.objects.using(using).create(name=f"{event.source}:{event.key}")


class ShopifyOrders(ShopifyWebhookView):
    secrets = [SHOPIFY_SECRET, SHOPIFY_OLD_SECRET]
    using: ClassVar[str | None] = "default"

    def handle(self, event: WebhookEvent) -> None:
        calls.atomic_depths.append(len(connections[self.using or "default"].atomic_blocks))
        calls.record(event)
        create_item(event, self.using or "default")
        transaction.on_commit(lambda: calls.on_commit.append(event.key), using=self.using)


class ShopifyAsync(ShopifyOrders):
    process_async = True


class ShopifyByEventId(ShopifyOrders):
    dedup_header = "X-Shopify-Event-Id"


class ShopifySmallBody(ShopifyOrders):
    max_body_size = 64


class StandardOrders(StandardWebhookView):
    secrets = [STANDARD_SECRET]

    def handle(self, event: WebhookEvent) -> None:
        calls.record(event)
        create_item(event, "default")


class GitHubPushes(GitHubWebhookView):
    secrets = [GITHUB_SECRET]

    def handle(self, event: WebhookEvent) -> None:
        calls.record(event)
        create_item(event, "default")


class PlainInsert(ShopifyWebhookView):
    """Bench baseline lives in bench/; this one is for the E301 check test."""

    def handle(self, event: WebhookEvent) -> None:
        create_item(event, "default")


# Views on the alias of a test's own cluster (created and migrated by the test).
FRESH_ALIAS = "webhooks_fresh"


class FreshShopify(ShopifyOrders):
    using = FRESH_ALIAS


class FreshDurable(FreshShopify):
    durable_ack = True
    durable_ack_timeout = 0.5


class FreshDurableNoWait(FreshShopify):
    durable_ack = True
    durable_ack_timeout = 0.0


class FreshDurableSessionLost(FreshDurable):
    """Loses its session between COMMIT and the durability check, as in a failover."""

    #: Set by the test: what cuts the session.
    lose_session: ClassVar[Callable[[], None] | None] = None

    def confirm_durable(self, delivery: Delivery, using: str, committed_on: Any) -> bool:
        if FreshDurableSessionLost.lose_session is not None:
            FreshDurableSessionLost.lose_session()
        return super().confirm_durable(delivery, using, committed_on)


# Secrets as a misconfigured environment gives them: each must refuse, never verify.
class EmptySecretShopify(ShopifyOrders):
    secrets = [""]


class WhitespaceSecretShopify(ShopifyOrders):
    secrets = [" \t"]


class EmptyKeyStandard(StandardOrders):
    secrets = ["whsec_"]


class ShopifyWithoutBodyDedup(ShopifyOrders):
    dedup_body = False


class ShopifyStrictBody(ShopifyOrders):
    dedup_body_strict = True


class ShopifyStrictBodyAsync(ShopifyStrictBody):
    process_async = True


class FreshDurableRelaxed(FreshDurable):
    durable_ack_without_standby = True
