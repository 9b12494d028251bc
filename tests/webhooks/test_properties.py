"""Hypothesis over headers and bodies: never a 500, never a row without a valid signature."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing.webhooks import sign_shopify
from tests.testapp.models import Item
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
    if draw(st.booleans()):
        # A well-formed key, often one an earlier example used: processed, then duplicates.
        headers["X-Shopify-Webhook-Id"] = draw(st.sampled_from(["order-1", "order-2", "order-3"]))
    signature = draw(st.sampled_from(["valid", "wrong-secret", "garbage", "missing"]))
    if signature == "valid":
        headers["X-Shopify-Hmac-Sha256"] = sign_shopify(body, SHOPIFY_SECRET)
    elif signature == "wrong-secret":
        headers["X-Shopify-Hmac-Sha256"] = sign_shopify(body, "not-the-secret")
    elif signature == "garbage":
        headers["X-Shopify-Hmac-Sha256"] = draw(st.text(max_size=60))
    return body, headers, signature == "valid"


#: A delivery every part of which is valid: the first time processed, then a duplicate.
VALID_BODY = b'{"id": 1}'
VALID = (
    VALID_BODY,
    {
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Webhook-Id": "order-example",
        "X-Shopify-Hmac-Sha256": sign_shopify(VALID_BODY, SHOPIFY_SECRET),
    },
    True,
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delivery=deliveries())
@example(delivery=VALID)
@example(delivery=VALID)
def test_never_500_and_never_a_row_without_a_valid_signature(
    client: Client, delivery: tuple[bytes, dict[str, str], bool]
) -> None:
    body, headers, signed = delivery
    # The database and `calls` live for the whole test, across Hypothesis's examples:
    # compare with this example's own starting point.
    before = WebhookEvent.objects.count()
    handled_before = len(calls.keys)
    response = client.post(
        "/shopify/orders", data=body, content_type="application/json", headers=headers
    )
    after = WebhookEvent.objects.count()
    handled = calls.keys[handled_before:]

    assert response.status_code in (200, 400, 401, 413), response.content
    answer = json.loads(response.content)
    assert "error" in answer or response.status_code == 200
    if not signed:
        assert response.status_code == 401
    if response.status_code != 200:
        assert after == before and not handled
    elif answer["status"] == "processed":
        # A signed delivery of a new key: stored once, handled once, its effect committed.
        assert signed and after == before + 1 and len(handled) == 1
        assert WebhookEvent.objects.filter(key=handled[0]).count() == 1
        assert Item.objects.filter(name__endswith=f":{handled[0]}").count() == 1
    else:
        # A key already stored by an earlier example: nothing new.
        assert answer["status"] == "duplicate", answer
        assert signed and after == before and not handled
