"""Hypothesis over headers and bodies: never a 500, never a row without a valid signature."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing.webhooks import sign_shopify
from tests.webhooks.views import SHOPIFY_SECRET, calls

pytestmark = [pytest.mark.urls("tests.webhooks.urls"), pytest.mark.django_db]

HEADER_NAMES = [
    "X-Shopify-Topic",
    "X-Shopify-Shop-Domain",
    "X-Shopify-Webhook-Id",
    "X-Shopify-Event-Id",
    "X-Shopify-Triggered-At",
    "X-Shopify-API-Version",
]
header_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "2024-13-45T99:99:99Z", "2025-01-01T00:00:00+00:00", "x" * 300]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=120),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"NaN", b"[1e400]", b'{"a": "\\u0000"}', b"[" * 5000, b"\xff\xfe{}"]),
)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[bytes, dict[str, str], bool]:
    body = draw(bodies)
    headers = draw(st.dictionaries(st.sampled_from(HEADER_NAMES), header_values))
    signature = draw(st.sampled_from(["valid", "wrong-secret", "garbage", "missing"]))
    if signature == "valid":
        headers["X-Shopify-Hmac-Sha256"] = sign_shopify(body, SHOPIFY_SECRET)
    elif signature == "wrong-secret":
        headers["X-Shopify-Hmac-Sha256"] = sign_shopify(body, "not-the-secret")
    elif signature == "garbage":
        headers["X-Shopify-Hmac-Sha256"] = draw(st.text(max_size=60))
    return body, headers, signature == "valid"


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delivery=deliveries())
def test_never_500_and_never_a_row_without_a_valid_signature(
    client: Client, delivery: tuple[bytes, dict[str, str], bool]
) -> None:
    body, headers, signed = delivery
    before = WebhookEvent.objects.count()
    response = client.post(
        "/shopify/orders", data=body, content_type="application/json", headers=headers
    )
    after = WebhookEvent.objects.count()

    assert response.status_code in (200, 400, 401, 413), response.content
    assert "error" in json.loads(response.content) or response.status_code == 200
    if not signed:
        assert response.status_code == 401
        assert after == before
    if response.status_code != 200:
        assert after == before
    else:
        assert calls.keys  # a 200 for a new key ran handle()
