"""Shopify's orders/create webhook, the django-pg-resilience way: verified, exactly once."""

from __future__ import annotations

from django.conf import settings

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.webhooks import ShopifyWebhookView
from example_project.shop.models import Order


class OrdersCreate(ShopifyWebhookView):
    """Creates the Order; redeliveries and concurrent duplicates answer "duplicate"."""

    durable_ack = False  # urls.py passes settings.SHOPIFY_DURABLE_ACK to as_view()

    def get_secrets(self) -> list[str]:
        return list(settings.SHOPIFY_WEBHOOK_SECRETS)

    def handle(self, event: WebhookEvent) -> None:
        Order.objects.create(**Order.fields_from_payload(event.payload))
