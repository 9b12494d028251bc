"""The view's contract through Django's test client: statuses, rows, logs, signals."""

from __future__ import annotations

import json
import logging

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from django_pg_resilience import signals, stats
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing.webhooks import (
    github_request,
    shopify_request,
    standard_webhooks_request,
)
from tests.testapp.models import Item
from tests.webhooks.views import (
    GITHUB_SECRET,
    SHOPIFY_OLD_SECRET,
    SHOPIFY_SECRET,
    STANDARD_SECRET,
    calls,
)

pytestmark = [pytest.mark.urls("tests.webhooks.urls"), pytest.mark.django_db(transaction=True)]

ORDERS = "/shopify/orders"


def post(client: Client, path: str, delivery: object) -> tuple[int, dict[str, str]]:
    response = client.post(path, **delivery.client_kwargs())  # type: ignore[attr-defined]
    return response.status_code, json.loads(response.content)


def test_first_delivery_is_processed_and_stored_with_its_headers(client: Client) -> None:
    delivery = shopify_request(
        {"id": 1}, SHOPIFY_SECRET, webhook_id="wh-1", event_id="ev-1", topic="orders/create"
    )
    assert post(client, ORDERS, delivery) == (200, {"status": "processed"})

    event = WebhookEvent.objects.get()
    assert (event.source, event.key, event.event_id) == ("shopify", "wh-1", "ev-1")
    assert (event.topic, event.account) == ("orders/create", "example.myshopify.com")
    assert event.status == WebhookEvent.Status.SUCCEEDED
    assert event.attempts == 1 and event.processed_at is not None
    assert event.payload == {"id": 1} and event.triggered_at is not None
    assert event.headers["X-Shopify-Webhook-Id"] == "wh-1"
    assert "X-Shopify-Hmac-Sha256" not in event.headers
    assert event.handler == "tests.webhooks.views.ShopifyOrders"
    assert calls.keys == ["wh-1"] and calls.on_commit == ["wh-1"]
    assert Item.objects.filter(name="shopify:wh-1").exists()


def test_redelivery_is_a_duplicate_and_handle_does_not_run_again(client: Client) -> None:
    received, duplicates = [], []
    signals.webhook_received.connect(lambda **kw: received.append(kw["key"]), weak=False)
    signals.webhook_duplicate.connect(lambda **kw: duplicates.append(kw["key"]), weak=False)
    try:
        delivery = shopify_request({"id": 2}, SHOPIFY_SECRET, webhook_id="wh-2")
        assert post(client, ORDERS, delivery)[1] == {"status": "processed"}
        assert post(client, ORDERS, delivery) == (200, {"status": "duplicate"})
    finally:
        signals.webhook_received.receivers.clear()
        signals.webhook_duplicate.receivers.clear()
    assert calls.keys == ["wh-2"]
    assert (received, duplicates) == (["wh-2"], ["wh-2"])
    assert stats.snapshot()["webhooks_duplicates"] == {"shopify": 1}
    assert WebhookEvent.objects.count() == 1 and Item.objects.count() == 1


def test_dedup_on_event_id_is_a_class_attribute(client: Client) -> None:
    first = shopify_request({"id": 3}, SHOPIFY_SECRET, webhook_id="a", event_id="same-event")
    # Another body: the same body would be a duplicate by its digest on any view.
    second = shopify_request(
        {"id": 3, "redelivered": True}, SHOPIFY_SECRET, webhook_id="b", event_id="same-event"
    )
    assert post(client, "/shopify/event-id", first)[1] == {"status": "processed"}
    assert post(client, "/shopify/event-id", second)[1] == {"status": "duplicate"}
    assert post(client, ORDERS, second)[1] == {"status": "processed"}  # Webhook-Id differs


def test_rotated_secret_is_accepted(client: Client) -> None:
    delivery = shopify_request({"id": 4}, SHOPIFY_OLD_SECRET)
    assert post(client, ORDERS, delivery) == (200, {"status": "processed"})


@pytest.mark.parametrize(
    "mutate, status, code",
    [
        (lambda d: d.headers.pop("X-Shopify-Hmac-Sha256"), 401, "missing_signature"),
        (lambda d: d.headers.update({"X-Shopify-Hmac-Sha256": "AAAA"}), 401, "bad_signature"),
        (lambda d: setattr(d, "body", d.body + b" "), 401, "bad_signature"),
        (lambda d: d.headers.pop("X-Shopify-Webhook-Id"), 400, "missing_header"),
    ],
    ids=["missing-signature", "bad-signature", "tampered-body", "missing-webhook-id"],
)
def test_refused_deliveries_store_nothing(
    client: Client, mutate: object, status: int, code: str
) -> None:
    delivery = shopify_request({"id": 5}, SHOPIFY_SECRET)
    mutate(delivery)  # type: ignore[operator]
    assert post(client, ORDERS, delivery) == (status, {"error": code})
    assert WebhookEvent.objects.count() == 0 and calls.keys == []


def test_signature_is_checked_before_any_query(client: Client) -> None:
    delivery = shopify_request({"id": 6}, "the-wrong-secret")
    with CaptureQueriesContext(connection) as queries:
        assert post(client, ORDERS, delivery)[0] == 401
    assert len(queries) == 0


def test_wrong_secret_is_401(client: Client) -> None:
    assert post(client, ORDERS, shopify_request({"id": 7}, "not-ours"))[0] == 401
    assert WebhookEvent.objects.count() == 0


def test_malformed_json_is_400_and_stores_nothing(client: Client) -> None:
    delivery = shopify_request(b'{"id": 8', SHOPIFY_SECRET)
    assert post(client, ORDERS, delivery) == (400, {"error": "malformed_json"})
    assert WebhookEvent.objects.count() == 0


def test_oversize_body_is_413_before_reading_it(client: Client) -> None:
    delivery = shopify_request({"id": 9, "note": "x" * 100}, SHOPIFY_SECRET)
    assert post(client, "/shopify/small", delivery) == (413, {"error": "body_too_large"})
    with override_settings(PG_RESILIENCE={"WEBHOOK_MAX_BODY_SIZE": 10}):
        assert post(client, ORDERS, delivery)[0] == 413
    assert WebhookEvent.objects.count() == 0


def test_get_is_405(client: Client) -> None:
    assert client.get(ORDERS).status_code == 405


def test_views_are_csrf_exempt_and_marked_for_the_bare_503(client: Client) -> None:
    from tests.webhooks.urls import urlpatterns

    view = urlpatterns[0].callback
    assert view.csrf_exempt is True
    assert view.pg_resilience_bare_503 is True
    strict = Client(enforce_csrf_checks=True)
    assert post(strict, ORDERS, shopify_request({"id": 10}, SHOPIFY_SECRET))[0] == 200


def test_stale_standard_webhooks_timestamp_is_401(client: Client) -> None:
    import time

    stale = standard_webhooks_request(
        {"type": "x"}, STANDARD_SECRET, timestamp=int(time.time()) - 600
    )
    assert post(client, "/standard/orders", stale) == (401, {"error": "stale_timestamp"})
    fresh = standard_webhooks_request({"type": "invoice.paid"}, STANDARD_SECRET, msg_id="msg_1")
    assert post(client, "/standard/orders", fresh) == (200, {"status": "processed"})
    event = WebhookEvent.objects.get()
    assert (event.source, event.key, event.topic) == ("standard", "msg_1", "invoice.paid")


def test_github_delivery(client: Client) -> None:
    delivery = github_request({"installation": {"id": 42}}, GITHUB_SECRET, delivery="d-1")
    assert post(client, "/github/pushes", delivery) == (200, {"status": "processed"})
    assert post(client, "/github/pushes", delivery)[1] == {"status": "duplicate"}
    event = WebhookEvent.objects.get()
    assert (event.source, event.key, event.topic, event.account) == ("github", "d-1", "push", "42")
    bad = github_request({}, "nope")
    assert post(client, "/github/pushes", bad)[0] == 401


def test_failing_handler_is_500_recorded_failed_and_retried(client: Client) -> None:
    calls.fail_with = RuntimeError("payment provider said no")
    delivery = shopify_request({"id": 11}, SHOPIFY_SECRET, webhook_id="wh-fail")
    assert post(client, ORDERS, delivery) == (500, {"error": "handler_failed"})
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.FAILED and event.attempts == 1
    assert "payment provider said no" in event.last_error
    assert Item.objects.count() == 0 and calls.on_commit == []  # rolled back

    calls.fail_with = None
    assert post(client, ORDERS, delivery) == (200, {"status": "processed"})
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.SUCCEEDED and event.attempts == 2
    assert event.last_error == ""
    assert Item.objects.count() == 1 and calls.keys == ["wh-fail", "wh-fail"]
    assert post(client, ORDERS, delivery)[1] == {"status": "duplicate"}


def test_secrets_never_reach_logs_or_rows(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    calls.fail_with = ValueError(f"cannot use key {SHOPIFY_SECRET}")
    good = shopify_request({"id": 12}, SHOPIFY_SECRET, webhook_id="wh-secret")
    assert post(client, ORDERS, good)[0] == 500
    bad = shopify_request({"id": 13}, "attacker")
    assert post(client, ORDERS, bad)[0] == 401
    event = WebhookEvent.objects.get()
    text = caplog.text + event.last_error + json.dumps(event.headers)
    assert "webhook shopify wh-secret: handle() raised" in caplog.text
    assert "***" in event.last_error
    for secret in (SHOPIFY_SECRET, SHOPIFY_OLD_SECRET):
        assert secret not in text
    for signature in (good.headers["X-Shopify-Hmac-Sha256"], bad.headers["X-Shopify-Hmac-Sha256"]):
        assert signature not in text


class ReadsPostMiddleware:
    """What a careless middleware does: touch request.POST on every request."""

    def __init__(self, get_response: object) -> None:
        self.get_response = get_response

    def __call__(self, request: object) -> object:
        request.POST  # type: ignore[attr-defined]  # noqa: B018
        return self.get_response(request)  # type: ignore[operator]


@override_settings(MIDDLEWARE=["tests.webhooks.test_views.ReadsPostMiddleware"])
def test_a_middleware_reading_request_post_breaks_signature_checks(client: Client) -> None:
    delivery = shopify_request({"id": 14}, SHOPIFY_SECRET)
    # A multipart body read through request.POST is consumed: the raw bytes are gone.
    response = client.post(
        ORDERS,
        data=delivery.body,
        content_type="multipart/form-data; boundary=xyz",
        headers=delivery.headers,
    )
    assert response.status_code == 400
    assert json.loads(response.content) == {"error": "body_unavailable"}
    assert WebhookEvent.objects.count() == 0
    # A JSON body is not parsed by request.POST, so the same middleware is harmless there.
    assert post(client, ORDERS, delivery) == (200, {"status": "processed"})


def test_webhook_views_opt_out_of_atomic_requests(client: Client) -> None:
    settings_dict = connection.settings_dict
    settings_dict["ATOMIC_REQUESTS"] = True
    try:
        delivery = shopify_request({"id": 15}, SHOPIFY_SECRET)
        assert post(client, ORDERS, delivery) == (200, {"status": "processed"})
    finally:
        settings_dict["ATOMIC_REQUESTS"] = False
    # Only the view's own transaction: the request is not wrapped in another one.
    assert calls.atomic_depths == [1]
