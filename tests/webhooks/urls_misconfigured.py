"""Views with every mistake the webhook checks know."""

from __future__ import annotations

from typing import ClassVar

from django.urls import path

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.webhooks import (
    IdempotentWebhookView,
    ShopifyWebhookView,
    StandardWebhookView,
)


class NoSecret(ShopifyWebhookView):  # E301
    def handle(self, event: WebhookEvent) -> None:
        pass


class NoHandle(ShopifyWebhookView):  # E302
    secrets = ["s"]


class BadStandardSecret(StandardWebhookView):  # E303
    secrets = ["not-a-whsec-secret!"]

    def handle(self, event: WebhookEvent) -> None:
        pass


class NoVerifier(IdempotentWebhookView):  # E304
    secrets = ["s"]

    def handle(self, event: WebhookEvent) -> None:
        pass


class UnknownStandby(ShopifyWebhookView):  # E305
    secrets = ["s"]
    durable_ack_standby: ClassVar[str | None] = "no-such-alias"

    def handle(self, event: WebhookEvent) -> None:
        pass


urlpatterns = [
    path("a", NoSecret.as_view()),
    path("b", NoHandle.as_view()),
    path("c", BadStandardSecret.as_view()),
    path("d", NoVerifier.as_view()),
    path("e", UnknownStandby.as_view()),
]
