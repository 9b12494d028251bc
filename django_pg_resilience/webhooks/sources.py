"""The webhook views of each sender: Shopify, Standard Webhooks, GitHub."""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

from django.http import HttpRequest
from django.utils.dateparse import parse_datetime

from django_pg_resilience.webhooks.exceptions import bad_request
from django_pg_resilience.webhooks.verifiers import (
    GitHubVerifier,
    ShopifyVerifier,
    StandardWebhooksVerifier,
    Verifier,
    standard_webhooks_headers,
)
from django_pg_resilience.webhooks.views import IdempotentWebhookView

__all__ = ["GitHubWebhookView", "ShopifyWebhookView", "StandardWebhookView"]


def _header(request: HttpRequest, name: str) -> str:
    return request.headers.get(name, "").strip()


def _required(request: HttpRequest, name: str) -> str:
    value = _header(request, name)
    if not value:
        raise bad_request("missing_header", f"no {name} header")
    return value


class ShopifyWebhookView(IdempotentWebhookView):
    """Shopify: ``X-Shopify-Hmac-Sha256`` over the raw body with the app's client secret.

    Shopify's docs disagree on the deduplication key: ``dedup_header`` is
    ``X-Shopify-Webhook-Id`` (one per delivery attempt series) by default;
    ``X-Shopify-Event-Id`` is stored and indexed either way (``event_id``), and
    may be chosen instead.
    """

    source: ClassVar[str] = "shopify"
    verifier: ClassVar[Verifier | None] = ShopifyVerifier()
    dedup_header: ClassVar[str] = "X-Shopify-Webhook-Id"
    stored_headers: ClassVar[tuple[str, ...]] = (
        "X-Shopify-Topic",
        "X-Shopify-Shop-Domain",
        "X-Shopify-Webhook-Id",
        "X-Shopify-Event-Id",
        "X-Shopify-Triggered-At",
        "X-Shopify-API-Version",
        "X-Shopify-Name",
    )

    def get_idempotency_key(self, request: HttpRequest, payload: Any) -> str:
        return _required(request, self.dedup_header)

    def get_topic(self, request: HttpRequest, payload: Any) -> str:
        return _header(request, "X-Shopify-Topic")

    def get_account(self, request: HttpRequest, payload: Any) -> str:
        return _header(request, "X-Shopify-Shop-Domain")

    def get_event_id(self, request: HttpRequest, payload: Any) -> str:
        return _header(request, "X-Shopify-Event-Id")

    def get_triggered_at(self, request: HttpRequest, payload: Any) -> datetime.datetime | None:
        value = _header(request, "X-Shopify-Triggered-At")
        try:
            return parse_datetime(value) if value else None
        except ValueError:
            return None


class StandardWebhookView(IdempotentWebhookView):
    """Standard Webhooks (standardwebhooks.com): ``whsec_`` secrets, ``webhook-id`` as the key.

    ``topic_field`` names the payload field that holds the event type
    (``"type"`` in the spec's examples). Svix-based senders (Clerk, Resend...)
    send ``svix-id`` / ``svix-timestamp`` / ``svix-signature`` instead; both are
    read, one whole set per delivery (``webhook-*`` when present).
    """

    source: ClassVar[str] = "standard"
    verifier: ClassVar[Verifier | None] = StandardWebhooksVerifier()
    topic_field: ClassVar[str] = "type"
    #: webhook-id is signed: a replay under a new id fails the signature, and a
    #: sender may legitimately send the same body as two messages.
    dedup_body: ClassVar[bool] = False
    stored_headers: ClassVar[tuple[str, ...]] = (
        "webhook-id",
        "webhook-timestamp",
        "svix-id",
        "svix-timestamp",
    )

    def get_idempotency_key(self, request: HttpRequest, payload: Any) -> str:
        # The id the signature covered: the same header set the verifier chose.
        return _required(request, standard_webhooks_headers(request.headers).id)

    def get_topic(self, request: HttpRequest, payload: Any) -> str:
        value = payload.get(self.topic_field) if isinstance(payload, dict) else None
        return value if isinstance(value, str) else ""

    def get_triggered_at(self, request: HttpRequest, payload: Any) -> datetime.datetime | None:
        try:
            seconds = int(_header(request, standard_webhooks_headers(request.headers).timestamp))
            return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
        except (ValueError, OverflowError, OSError):
            return None


class GitHubWebhookView(IdempotentWebhookView):
    """GitHub: ``X-Hub-Signature-256``; key ``X-GitHub-Delivery``, topic ``X-GitHub-Event``."""

    source: ClassVar[str] = "github"
    verifier: ClassVar[Verifier | None] = GitHubVerifier()
    stored_headers: ClassVar[tuple[str, ...]] = (
        "X-GitHub-Delivery",
        "X-GitHub-Event",
        "X-GitHub-Hook-ID",
        "X-GitHub-Hook-Installation-Target-ID",
    )

    def get_idempotency_key(self, request: HttpRequest, payload: Any) -> str:
        return _required(request, "X-GitHub-Delivery")

    def get_topic(self, request: HttpRequest, payload: Any) -> str:
        return _header(request, "X-GitHub-Event")

    def get_account(self, request: HttpRequest, payload: Any) -> str:
        installation = payload.get("installation") if isinstance(payload, dict) else None
        if isinstance(installation, dict) and installation.get("id") is not None:
            return str(installation["id"])
        return ""
