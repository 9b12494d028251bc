"""Build correctly signed webhook deliveries for your own tests.

::

    from django_pg_resilience.testing.webhooks import shopify_request

    delivery = shopify_request({"id": 1001}, secret="shpss_test", topic="orders/create")
    response = client.post("/webhooks/shopify/orders-create", **delivery.client_kwargs())
    # or, against a live server:
    urllib.request.urlopen(delivery.urllib_request(live_server.url + "/webhooks/..."))

``WebhookEventFactory`` (factory_boy) makes ``WebhookEvent`` rows; it is built
on first attribute access (``from ... import WebhookEventFactory`` works), so
this module imports without factory_boy installed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import secrets as random_secrets
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SignedRequest",
    "github_request",
    "new_standard_webhooks_secret",
    "shopify_request",
    "sign_github",
    "sign_shopify",
    "sign_standard_webhooks",
    "standard_webhooks_request",
]


@dataclass
class SignedRequest:
    """A delivery: the raw ``body`` and the ``headers`` a sender would send."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for Django's test client: ``client.post(path, **kwargs)``."""
        return {"data": self.body, "content_type": self.content_type, "headers": self.headers}

    def urllib_request(self, url: str) -> urllib.request.Request:
        """A POST ``urllib.request.Request`` to ``url`` (e.g. a live test server)."""
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {url!r}")
        return urllib.request.Request(  # noqa: S310 - the scheme is checked above
            url,
            data=self.body,
            headers={"Content-Type": self.content_type, **self.headers},
            method="POST",
        )


def _body(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, separators=(",", ":")).encode()


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def sign_shopify(body: bytes, secret: str) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value of ``body``."""
    return base64.b64encode(_hmac(secret.encode(), body)).decode()


def sign_github(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` value of ``body``."""
    return "sha256=" + _hmac(secret.encode(), body).hex()


def sign_standard_webhooks(body: bytes, secret: str, msg_id: str, timestamp: int) -> str:
    """The ``webhook-signature`` value (one ``v1,`` entry) for ``whsec_`` ``secret``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(_hmac(key, signed)).decode()


def new_standard_webhooks_secret() -> str:
    """A fresh ``whsec_`` secret."""
    return "whsec_" + base64.b64encode(random_secrets.token_bytes(24)).decode()


def shopify_request(
    payload: Any,
    secret: str,
    *,
    topic: str = "orders/create",
    shop_domain: str = "example.myshopify.com",
    webhook_id: str | None = None,
    event_id: str | None = None,
    triggered_at: datetime.datetime | None = None,
    api_version: str = "2025-07",
) -> SignedRequest:
    """A Shopify delivery of ``payload`` (a JSON value, or raw bytes) signed with ``secret``."""
    body = _body(payload)
    moment = triggered_at or datetime.datetime.now(datetime.timezone.utc)
    return SignedRequest(
        body,
        {
            "X-Shopify-Hmac-Sha256": sign_shopify(body, secret),
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": shop_domain,
            "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
            "X-Shopify-Triggered-At": moment.isoformat(),
            "X-Shopify-API-Version": api_version,
        },
    )


def standard_webhooks_request(
    payload: Any, secret: str, *, msg_id: str | None = None, timestamp: int | None = None
) -> SignedRequest:
    """A Standard Webhooks delivery signed with the ``whsec_`` ``secret``."""
    body = _body(payload)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    return SignedRequest(
        body,
        {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_standard_webhooks(body, secret, msg_id, timestamp),
        },
    )


def github_request(
    payload: Any, secret: str, *, event: str = "push", delivery: str | None = None
) -> SignedRequest:
    """A GitHub delivery signed with ``secret``."""
    body = _body(payload)
    return SignedRequest(
        body,
        {
            "X-Hub-Signature-256": sign_github(body, secret),
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        },
    )


def _make_factory() -> type:
    import factory
    from factory.django import DjangoModelFactory

    from django_pg_resilience.models import WebhookEvent

    class WebhookEventFactory(DjangoModelFactory):
        """A stored ``WebhookEvent`` (Shopify order by default)."""

        class Meta:
            model = WebhookEvent
            django_get_or_create = ("source", "key")

        source = "shopify"
        key = factory.LazyFunction(lambda: str(uuid.uuid4()))
        event_id = factory.LazyFunction(lambda: str(uuid.uuid4()))
        topic = "orders/create"
        account = "example.myshopify.com"
        status = WebhookEvent.Status.SUCCEEDED
        attempts = 1
        payload = factory.Sequence(lambda n: {"id": 1000 + n})

    return WebhookEventFactory


_factory: type | None = None


def __getattr__(name: str) -> Any:
    # Built on first use so that importing this module needs no factory_boy.
    global _factory
    if name == "WebhookEventFactory":
        if _factory is None:
            _factory = _make_factory()
        return _factory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
