"""Hostile input where the input is the attack: blank keys, huge timestamps, replays, non-ASCII.

The contract: each is refused with a documented status and code (401 for
anything about the signature), never verified, never a 500, never a second
run of the handler.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing.webhooks import (
    github_request,
    shopify_request,
    sign_standard_webhooks,
    standard_webhooks_request,
)
from django_pg_resilience.webhooks.exceptions import WebhookRejected
from django_pg_resilience.webhooks.verifiers import (
    GitHubVerifier,
    ShopifyVerifier,
    StandardWebhooksVerifier,
)
from tests.webhooks.views import SHOPIFY_SECRET, STANDARD_SECRET, calls

pytestmark = [pytest.mark.urls("tests.webhooks.urls_fail_closed")]

HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: What an unset environment variable and careless quoting give.
blank_secrets = st.text(st.sampled_from(" \t\n\r\x0b\x0c"), max_size=8)


def refusal(verify: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(WebhookRejected) as refused:
        verify(*args)
    return refused.value.status, refused.value.code


@HYPOTHESIS
@given(body=st.binary(max_size=200), blanks=st.lists(blank_secrets, min_size=1, max_size=3))
def test_a_body_signed_with_a_blank_key_never_verifies(body: bytes, blanks: list[str]) -> None:
    for key in blanks:
        for request, verifier in (
            (shopify_request(body, key), ShopifyVerifier()),
            (github_request(body, key), GitHubVerifier()),
        ):
            assert refusal(verifier.verify, body, request.headers, blanks) == (401, "no_secret")
        # "whsec_" + an empty variable: the base64 of nothing is the empty key.
        standard = standard_webhooks_request(body, "whsec_")
        secrets = ["whsec_" + blank for blank in blanks]
        verify = StandardWebhooksVerifier().verify
        assert refusal(verify, body, standard.headers, secrets) == (401, "no_secret")


@HYPOTHESIS
@given(body=st.binary(max_size=100), blank=blank_secrets)
def test_a_blank_secret_beside_a_real_one_is_ignored(body: bytes, blank: str) -> None:
    forged = shopify_request(body, blank)
    verify = ShopifyVerifier().verify
    assert refusal(verify, body, forged.headers, [SHOPIFY_SECRET, blank]) == (
        401,
        "bad_signature",
    )
    genuine = shopify_request(body, SHOPIFY_SECRET)
    ShopifyVerifier().verify(body, genuine.headers, [blank, SHOPIFY_SECRET])


timestamps = st.one_of(
    st.integers(min_value=13, max_value=5000).map(lambda n: "9" * n),  # 309+ digits overflow
    st.integers(min_value=10**12).map(str),
    st.integers(max_value=-1).map(str),
    st.sampled_from(["1_700_000_000", "+1700000000", "1.7e9", "\u0661\u0667" * 5, "0x65"]),
)


@HYPOTHESIS
@given(timestamp=timestamps)
def test_a_timestamp_that_is_not_1_to_12_digits_is_401_before_any_arithmetic(
    timestamp: str,
) -> None:
    body = b"{}"
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode(),
    }
    status, code = refusal(StandardWebhooksVerifier().verify, body, headers, [STANDARD_SECRET])
    assert status == 401
    assert code in {"bad_timestamp", "malformed_signature"}


@pytest.mark.django_db
@HYPOTHESIS
@given(digits=st.integers(min_value=309, max_value=4300))
def test_an_overflowing_timestamp_is_a_401_not_a_500(client: Client, digits: int) -> None:
    body = b'{"type": "x"}'
    timestamp = "1" * digits
    headers = {
        "webhook-id": "msg_overflow",
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(b"\0" * 32).decode(),
    }
    response = client.post(
        "/standard/orders", data=body, content_type="application/json", headers=headers
    )
    assert (response.status_code, json.loads(response.content)) == (
        401,
        {"error": "bad_timestamp"},
    )


non_ascii_ids = st.text(min_size=1, max_size=20).filter(
    lambda text: not text.isascii() and text.strip() == text and "\x00" not in text
)


@HYPOTHESIS
@given(msg_id=non_ascii_ids)
def test_a_non_ascii_webhook_id_is_a_clear_401(msg_id: str) -> None:
    body = b"{}"
    now = int(time.time())
    try:
        signature = sign_standard_webhooks(body, STANDARD_SECRET, msg_id, now)
    except UnicodeEncodeError:
        signature = "v1,AAAA"  # a lone surrogate: no sender could have signed it
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}
    status, code = refusal(StandardWebhooksVerifier().verify, body, headers, [STANDARD_SECRET])
    assert (status, code) == (401, "malformed_id")


@pytest.mark.django_db
@HYPOTHESIS
@given(
    new_id=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
    topic=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
def test_a_captured_body_replayed_under_any_id_and_topic_runs_once(
    client: Client, new_id: str, topic: str
) -> None:
    # The strict rule (dedup_body_strict): under any topic. The default scopes
    # the body by topic (tests/webhooks/test_fail_closed.py).
    captured = shopify_request({"id": 424242}, SHOPIFY_SECRET, webhook_id="captured")
    client.post(
        "/shopify/strict-body",
        data=captured.body,
        content_type="application/json",
        headers=captured.headers,
    )
    replay = {**captured.headers, "X-Shopify-Webhook-Id": new_id, "X-Shopify-Topic": topic}
    response = client.post(
        "/shopify/strict-body", data=captured.body, content_type="application/json", headers=replay
    )
    assert (response.status_code, json.loads(response.content)) == (200, {"status": "duplicate"})
    assert WebhookEvent.objects.filter(source="shopify").count() == 1
    assert calls.keys.count("captured") == 1
