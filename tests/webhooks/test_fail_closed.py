"""Fail closed: unusable secrets, replayed bodies, malformed headers, oversized bodies.

Each test sends what an attacker (or a misconfigured environment) would, over
real HTTP or Django's handlers, against the real database.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import tracemalloc
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import got_request_exception
from django.test import Client, override_settings

from django_pg_resilience import signals, stats
from django_pg_resilience.checks.webhooks import webhook_check_messages
from django_pg_resilience.middleware import note_availability_error
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing.webhooks import (
    github_request,
    shopify_request,
    sign_shopify,
    standard_webhooks_request,
)
from django_pg_resilience.webhooks import views as webhook_views
from tests.live_server import live_server
from tests.testapp.models import Item
from tests.webhooks.views import GITHUB_SECRET, SHOPIFY_SECRET, WhitespaceSecretShopify, calls

pytestmark = [pytest.mark.urls("tests.webhooks.urls_fail_closed")]


def post(client: Client, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    response = client.post(path, data=body, content_type="application/json", headers=headers)
    return response.status_code, json.loads(response.content)


# --- an empty signing secret never verifies ------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/empty-secret/shopify", "/empty-secret/whitespace"])
def test_a_delivery_signed_with_an_empty_or_blank_key_is_refused(client: Client, path: str) -> None:
    for key in ("", " \t"):
        forged = shopify_request({"id": 1}, key)
        assert post(client, path, forged.body, forged.headers) == (401, {"error": "no_secret"})
    assert calls.keys == [] and WebhookEvent.objects.count() == 0


@pytest.mark.django_db
def test_a_standard_secret_decoding_to_no_key_is_refused(client: Client) -> None:
    # "whsec_" + env("SECRET", default=""): the empty HMAC key, which anyone can use.
    forged = standard_webhooks_request({"type": "x"}, "whsec_")
    status, body = post(client, "/empty-secret/standard", forged.body, forged.headers)
    assert (status, body) == (401, {"error": "no_secret"})
    assert calls.keys == [] and WebhookEvent.objects.count() == 0


@pytest.mark.django_db
def test_no_usable_secret_is_logged_once_and_counted_with_every_refusal(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="django_pg_resilience.webhooks")
    webhook_views._reported_without_secret.discard(WhitespaceSecretShopify)
    refused: list[dict[str, Any]] = []

    def receiver(sender: Any, signal: Any, **kwargs: Any) -> None:
        refused.append(kwargs)

    signals.webhook_signature_failed.connect(receiver)
    try:
        for _ in range(3):
            forged = shopify_request({"id": 1}, "")
            post(client, "/empty-secret/whitespace", forged.body, forged.headers)
    finally:
        signals.webhook_signature_failed.disconnect(receiver)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "no usable signing secret" in errors[0].getMessage()
    assert refused == [{"source": "shopify", "reason": "no_secret"}] * 3
    assert stats.snapshot()["webhooks_signature_failures"] == {"shopify": 3}


@pytest.mark.django_db
def test_a_forged_signature_is_counted_and_signalled_without_the_signature(client: Client) -> None:
    refused: list[dict[str, Any]] = []

    def receiver(sender: Any, signal: Any, **kwargs: Any) -> None:
        refused.append(kwargs)

    forged = shopify_request({"id": 2}, "not-the-secret")
    signals.webhook_signature_failed.connect(receiver)
    try:
        assert post(client, "/shopify/orders", forged.body, forged.headers)[0] == 401
    finally:
        signals.webhook_signature_failed.disconnect(receiver)
    assert refused == [{"source": "shopify", "reason": "bad_signature"}]
    assert forged.headers["X-Shopify-Hmac-Sha256"] not in repr(refused)
    assert stats.snapshot()["webhooks_signature_failures"] == {"shopify": 1}


@override_settings(ROOT_URLCONF="tests.webhooks.urls_fail_closed")
def test_checks_say_empty_secrets_refuse_every_delivery() -> None:
    messages = {
        (m.obj.__name__ if isinstance(m.obj, type) else "", m.id): m.msg
        for m in webhook_check_messages()
    }
    assert "refused with 401" in messages[("EmptySecretShopify", "pg_resilience.E301")]
    assert "refused with 401" in messages[("WhitespaceSecretShopify", "pg_resilience.E301")]
    assert "empty key" in messages[("EmptyKeyStandard", "pg_resilience.E303")]


# --- a signed body replayed under a new, unsigned delivery id ---------------------------


@pytest.mark.django_db
def test_a_shopify_body_replayed_under_a_new_id_for_the_same_topic_is_a_duplicate(
    client: Client,
) -> None:
    first = shopify_request({"id": 70}, SHOPIFY_SECRET, webhook_id="genuine")
    replay = {**first.headers, "X-Shopify-Webhook-Id": "attacker-chosen"}
    assert post(client, "/shopify/orders", first.body, first.headers)[1] == {"status": "processed"}
    assert post(client, "/shopify/orders", first.body, replay)[1] == {"status": "duplicate"}
    assert calls.keys == ["genuine"]
    assert WebhookEvent.objects.count() == 1 and Item.objects.count() == 1


class _Replays:
    """Records webhook_body_replayed while the block runs."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def receive(self, sender: Any, signal: Any, **kwargs: Any) -> None:
        self.sent.append(kwargs)

    def __enter__(self) -> _Replays:
        signals.webhook_body_replayed.connect(self.receive)
        return self

    def __exit__(self, *exc_info: object) -> None:
        signals.webhook_body_replayed.disconnect(self.receive)


@pytest.mark.django_db
def test_one_body_under_two_topics_is_two_events_and_the_second_is_flagged(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    # An order created already paid: Shopify fires orders/create and
    # orders/paid, each with the order's JSON, which may be byte-identical.
    created = shopify_request({"id": 73}, SHOPIFY_SECRET, topic="orders/create", webhook_id="c")
    paid = shopify_request({"id": 73}, SHOPIFY_SECRET, topic="orders/paid", webhook_id="p")
    assert created.body == paid.body
    caplog.set_level(logging.WARNING, logger="django_pg_resilience.webhooks")
    with _Replays() as replays:
        assert post(client, "/shopify/orders", created.body, created.headers)[1] == {
            "status": "processed"
        }
        assert post(client, "/shopify/orders", paid.body, paid.headers)[1] == {
            "status": "processed"
        }
    assert calls.keys == ["c", "p"] and Item.objects.count() == 2
    flags = dict(WebhookEvent.objects.values_list("topic", "body_replayed"))
    assert flags == {"orders/create": False, "orders/paid": True}
    assert replays.sent == [
        {
            "source": "shopify",
            "key": "p",
            "topic": "orders/paid",
            "account": "example.myshopify.com",
            "outcome": "processed",
        }
    ]
    assert stats.snapshot()["webhooks_body_replays"] == {"shopify": 1}
    assert any("already stored" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db
def test_one_body_from_two_shops_is_two_events(client: Client) -> None:
    first = shopify_request({"id": 74}, SHOPIFY_SECRET, shop_domain="a.myshopify.com")
    second = shopify_request({"id": 74}, SHOPIFY_SECRET, shop_domain="b.myshopify.com")
    for delivery in (first, second):
        assert post(client, "/shopify/orders", delivery.body, delivery.headers)[1] == {
            "status": "processed"
        }
    assert WebhookEvent.objects.count() == 2


@pytest.mark.django_db
def test_scopes_are_compared_part_by_part_not_as_a_joined_key(client: Client) -> None:
    # Joined with ":", both would read "a:b:c" and the second would be dropped.
    one = shopify_request({"id": 75}, SHOPIFY_SECRET, shop_domain="a:b", topic="c")
    two = shopify_request({"id": 75}, SHOPIFY_SECRET, shop_domain="a", topic="b:c")
    for delivery in (one, two):
        assert post(client, "/shopify/orders", delivery.body, delivery.headers)[1] == {
            "status": "processed"
        }
    assert WebhookEvent.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "first_status"),
    [("/shopify/strict-body", "processed"), ("/shopify/strict-body-async", "queued")],
)
def test_the_strict_rule_makes_a_body_under_another_topic_a_duplicate(
    client: Client, path: str, first_status: str
) -> None:
    first = shopify_request({"id": 76}, SHOPIFY_SECRET, topic="orders/create", webhook_id="s-1")
    replay = {**first.headers, "X-Shopify-Webhook-Id": "s-2", "X-Shopify-Topic": "app/uninstalled"}
    with _Replays() as replays:
        assert post(client, path, first.body, first.headers)[1] == {"status": first_status}
        assert post(client, path, first.body, replay)[1] == {"status": "duplicate"}
    assert list(WebhookEvent.objects.values_list("key", "body_strict")) == [("s-1", True)]
    assert [sent["outcome"] for sent in replays.sent] == ["duplicate"]
    assert stats.snapshot()["webhooks_body_replays"] == {"shopify": 1}


@pytest.mark.django_db
def test_the_strict_rule_also_sees_a_body_stored_by_a_default_view(client: Client) -> None:
    first = shopify_request({"id": 77}, SHOPIFY_SECRET, topic="orders/create", webhook_id="d-1")
    replay = {**first.headers, "X-Shopify-Webhook-Id": "d-2", "X-Shopify-Topic": "orders/paid"}
    assert post(client, "/shopify/orders", first.body, first.headers)[1] == {"status": "processed"}
    assert post(client, "/shopify/strict-body", first.body, replay)[1] == {"status": "duplicate"}
    assert WebhookEvent.objects.count() == 1


@pytest.mark.django_db
def test_a_github_body_replayed_under_a_new_delivery_is_a_duplicate(client: Client) -> None:
    first = github_request({"ref": "main"}, GITHUB_SECRET, delivery="d-1")
    replay = {**first.headers, "X-GitHub-Delivery": "d-2"}
    assert post(client, "/github/pushes", first.body, first.headers)[1] == {"status": "processed"}
    assert post(client, "/github/pushes", first.body, replay)[1] == {"status": "duplicate"}
    assert WebhookEvent.objects.count() == 1


@pytest.mark.django_db
def test_a_replayed_body_queued_for_the_worker_is_a_duplicate(client: Client) -> None:
    first = shopify_request({"id": 71}, SHOPIFY_SECRET, webhook_id="q-1")
    replay = {**first.headers, "X-Shopify-Webhook-Id": "q-2"}
    assert post(client, "/shopify/async", first.body, first.headers)[1] == {"status": "queued"}
    assert post(client, "/shopify/async", first.body, replay)[1] == {"status": "duplicate"}
    assert WebhookEvent.objects.count() == 1


@pytest.mark.django_db
def test_body_dedup_can_be_turned_off(client: Client) -> None:
    first = shopify_request({"id": 72}, SHOPIFY_SECRET, webhook_id="n-1")
    again = {**first.headers, "X-Shopify-Webhook-Id": "n-2"}
    assert post(client, "/shopify/no-body-dedup", first.body, first.headers)[0] == 200
    assert post(client, "/shopify/no-body-dedup", first.body, again)[1] == {"status": "processed"}
    assert set(WebhookEvent.objects.values_list("body_sha256", flat=True)) == {""}


@pytest.mark.django_db
def test_the_standard_view_signs_its_id_and_stores_no_digest(client: Client) -> None:
    from tests.webhooks.views import STANDARD_SECRET

    for msg_id in ("msg_1", "msg_2"):
        delivery = standard_webhooks_request({"type": "ping"}, STANDARD_SECRET, msg_id=msg_id)
        status, body = post(client, "/standard/orders", delivery.body, delivery.headers)
        assert (status, body) == (200, {"status": "processed"})
    assert set(WebhookEvent.objects.values_list("body_sha256", flat=True)) == {""}


# --- header values as a WSGI server hands them over -----------------------------------


def _raw_post(base: str, path: str, body: bytes, headers: dict[str, bytes]) -> tuple[int, Any]:
    """POST over a socket with header values as raw bytes (UTF-8 on the wire)."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_non_ascii_webhook_id_is_a_clear_401_over_wsgi() -> None:
    # Signed correctly over the UTF-8 bytes: WSGI decodes them as latin-1, so it
    # can never verify; the refusal says why instead of "bad_signature".
    signed = standard_webhooks_request({"type": "x"}, _standard_secret(), msg_id="msg_é")
    headers = {name: value.encode() for name, value in signed.headers.items()}
    with live_server() as base:
        assert _raw_post(base, "/standard/orders", signed.body, headers) == (
            401,
            {"error": "malformed_id"},
        )
    assert WebhookEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_non_ascii_signature_is_a_clear_401_over_wsgi() -> None:
    signed = shopify_request({"id": 3}, SHOPIFY_SECRET)
    headers = {**{k: v.encode() for k, v in signed.headers.items()}}
    headers["X-Shopify-Hmac-Sha256"] = "é".encode() + headers["X-Shopify-Hmac-Sha256"]
    with live_server() as base:
        status, body = _raw_post(base, "/shopify/orders", signed.body, headers)
    assert (status, body) == (401, {"error": "malformed_signature"})


def _standard_secret() -> str:
    from tests.webhooks.views import STANDARD_SECRET

    return STANDARD_SECRET


# --- the body limit holds before the body is in memory --------------------------------


def _asgi_post(path: str, chunks: int, chunk: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """POST a chunked body (no Content-Length) through Django's ASGI handler."""
    sent = {"status": 0}
    remaining = {"chunks": chunks}

    async def receive() -> dict[str, Any]:
        if remaining["chunks"] == 0:
            await asyncio.Event().wait()  # the client stays connected until the response
        remaining["chunks"] -= 1
        more = remaining["chunks"] > 0
        return {"type": "http.request", "body": chunk, "more_body": more}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    asyncio.run(ASGIHandler()(scope, receive, send))
    return sent["status"]


@pytest.mark.django_db(transaction=True)
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=None)
def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_into_memory() -> None:
    chunk = b" " * (1 << 20)
    body_size = 50 * len(chunk)
    signature = sign_shopify(chunk * 50, SHOPIFY_SECRET).encode()
    tracemalloc.start()
    try:
        status = _asgi_post(
            "/shopify/small",
            50,
            chunk,
            [(b"x-shopify-hmac-sha256", signature), (b"x-shopify-webhook-id", b"big")],
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 413
    # Django spools the upload to a temporary file; the view reads 65 bytes of it.
    assert peak < body_size / 5, f"peak {peak} bytes for a {body_size}-byte body"
    assert WebhookEvent.objects.count() == 0


@override_settings(ROOT_URLCONF="tests.webhooks.urls", DATA_UPLOAD_MAX_MEMORY_SIZE=None)
def test_w301_fires_when_django_reads_any_body_whole() -> None:
    assert [m.id for m in webhook_check_messages()] == ["pg_resilience.W301"]


# --- the middleware's receiver is connected by the app, once --------------------------


def test_the_exception_receiver_is_connected_once_by_the_app_not_by_middleware() -> None:
    receivers = [r for r in got_request_exception._live_receivers(None)[0] if r is not None]
    assert receivers.count(note_availability_error) == 1
