"""Idempotent webhooks: each event takes effect exactly once, and an acknowledged one is never lost.

::

    from django_pg_resilience.webhooks import ShopifyWebhookView

    class OrdersCreate(ShopifyWebhookView):
        secrets = [settings.SHOPIFY_WEBHOOK_SECRET]

        def handle(self, event):
            Order.objects.create(shopify_order_id=event.payload["id"])
"""

from __future__ import annotations

from django_pg_resilience.webhooks.exceptions import WebhookRejected
from django_pg_resilience.webhooks.sources import (
    GitHubWebhookView,
    ShopifyWebhookView,
    StandardWebhookView,
)
from django_pg_resilience.webhooks.views import IdempotentWebhookView

__all__ = [
    "GitHubWebhookView",
    "IdempotentWebhookView",
    "ShopifyWebhookView",
    "StandardWebhookView",
    "WebhookRejected",
]
