"""Svix's header names, and our signatures against the official ``standardwebhooks`` package.

The official library signs and verifies; ours must agree with it both ways, for
the spec's ``webhook-*`` names and for Svix's ``svix-*`` names of the same scheme.
"""

from __future__ import annotations

import base64
import datetime
import json
import time
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing.webhooks import SignedRequest, sign_standard_webhooks
from django_pg_resilience.webhooks.exceptions import WebhookRejected
from django_pg_resilience.webhooks.verifiers import (
    STANDARD_WEBHOOKS_HEADERS,
    SVIX_HEADERS,
    StandardWebhooksHeaders,
    StandardWebhooksVerifier,
    standard_webhooks_headers,
)
from tests.webhooks.views import STANDARD_SECRET, calls

standardwebhooks = pytest.importorskip(
    "standardwebhooks", reason="the official package is a dev dependency (pip install -e .[dev])"
)

HYPOTHESIS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
HEADER_SETS = {"webhook": STANDARD_WEBHOOKS_HEADERS, "svix": SVIX_HEADERS}

payloads = st.text(max_size=2000)  # the official library verifies text (UTF-8)
message_ids = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1
)
keys = st.binary(min_size=1, max_size=64)


def whsec(key: bytes, *, padded: bool = True) -> str:
    encoded = base64.b64encode(key).decode()
    return "whsec_" + (encoded if padded else encoded.rstrip("="))


def named(
    names: StandardWebhooksHeaders, msg_id: str, timestamp: int, signature: str
) -> dict[str, str]:
    return {names.id: msg_id, names.timestamp: str(timestamp), names.signature: signature}


def as_spec_names(headers: dict[str, str]) -> dict[str, str]:
    # The official library reads only the spec's names; svix-* carry the same values.
    return {"webhook-" + name.split("-", 1)[1]: value for name, value in headers.items()}


@pytest.mark.parametrize("header_set", list(HEADER_SETS))
@HYPOTHESIS
@given(payload=payloads, msg_id=message_ids, key=keys, padded=st.booleans())
def test_what_the_official_library_signs_we_accept(
    header_set: str, payload: str, msg_id: str, key: bytes, padded: bool
) -> None:
    secret = whsec(key, padded=padded)
    now = int(time.time())
    moment = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)
    signature = standardwebhooks.Webhook(secret).sign(msg_id, moment, payload)
    headers = named(HEADER_SETS[header_set], msg_id, now, signature)

    StandardWebhooksVerifier().verify(payload.encode(), headers, [secret])

    with pytest.raises(WebhookRejected) as refused:
        StandardWebhooksVerifier().verify((payload + "x").encode(), headers, [secret])
    assert refused.value.code == "bad_signature"


@pytest.mark.parametrize("header_set", list(HEADER_SETS))
@HYPOTHESIS
@given(payload=payloads, msg_id=message_ids, key=keys)
def test_what_we_sign_the_official_library_accepts(
    header_set: str, payload: str, msg_id: str, key: bytes
) -> None:
    secret = whsec(key)
    now = int(time.time())
    body = payload.encode()
    headers = named(
        HEADER_SETS[header_set], msg_id, now, sign_standard_webhooks(body, secret, msg_id, now)
    )
    StandardWebhooksVerifier().verify(body, headers, [secret])  # and we agree with ourselves

    official = standardwebhooks.Webhook(secret)
    assert official.verify(body, as_spec_names(headers), json_parse=False) is None

    with pytest.raises(standardwebhooks.WebhookVerificationError):
        official.verify(body + b"x", as_spec_names(headers), json_parse=False)


def test_the_spec_names_win_when_both_sets_are_present() -> None:
    both = {"svix-id": "a", "svix-timestamp": "1", "svix-signature": "v1,x", "webhook-id": "b"}

    assert standard_webhooks_headers(both) == STANDARD_WEBHOOKS_HEADERS
    assert standard_webhooks_headers({"svix-id": "a"}) == SVIX_HEADERS
    assert standard_webhooks_headers({}) == STANDARD_WEBHOOKS_HEADERS


def test_sets_are_never_mixed_a_svix_signature_with_a_webhook_id_is_refused() -> None:
    # A valid Svix delivery plus an unsigned webhook-id: the spec's set is chosen
    # whole, has no signature, and the delivery is refused; the unsigned id can
    # never become the idempotency key of a signed body.
    now = int(time.time())
    body = b'{"type": "user.created"}'
    signed = named(
        SVIX_HEADERS,
        "msg_svix",
        now,
        sign_standard_webhooks(body, STANDARD_SECRET, "msg_svix", now),
    )

    with pytest.raises(WebhookRejected) as refused:
        StandardWebhooksVerifier().verify(
            body, {**signed, "webhook-id": "msg_other"}, [STANDARD_SECRET]
        )

    assert refused.value.code == "missing_signature"
    assert "webhook-signature" in str(refused.value)


def svix_delivery(
    payload: Any, msg_id: str, *, extra: dict[str, str] | None = None
) -> SignedRequest:
    body = json.dumps(payload).encode()
    now = int(time.time())
    signature = sign_standard_webhooks(body, STANDARD_SECRET, msg_id, now)
    return SignedRequest(body, {**named(SVIX_HEADERS, msg_id, now, signature), **(extra or {})})


@pytest.mark.urls("tests.webhooks.urls")
@pytest.mark.django_db(transaction=True)
def test_a_svix_delivery_is_processed_once_under_its_svix_id(client: Client) -> None:
    delivery = svix_delivery({"type": "email.sent", "data": {"id": 7}}, "msg_2abc")

    first = client.post("/standard/orders", **delivery.client_kwargs())
    again = client.post("/standard/orders", **delivery.client_kwargs())

    assert (first.status_code, first.json()) == (200, {"status": "processed"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    event = WebhookEvent.objects.get()
    assert (event.source, event.key, event.topic) == ("standard", "msg_2abc", "email.sent")
    assert event.triggered_at is not None
    assert abs(event.triggered_at.timestamp() - time.time()) < 600
    assert event.headers["svix-id"] == "msg_2abc"
    assert "svix-signature" not in event.headers
    assert calls.keys == ["msg_2abc"]


@pytest.mark.urls("tests.webhooks.urls")
@pytest.mark.django_db(transaction=True)
def test_a_forged_svix_signature_is_refused_and_stores_nothing(client: Client) -> None:
    delivery = svix_delivery({"type": "user.deleted"}, "msg_forged")
    delivery.headers["svix-signature"] = "v1," + base64.b64encode(b"\0" * 32).decode()

    response = client.post("/standard/orders", **delivery.client_kwargs())

    assert response.status_code == 401
    assert response.json()["error"] == "bad_signature"
    assert not WebhookEvent.objects.exists()
