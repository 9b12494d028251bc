"""Hostile input against every verifier and webhook view.

What tests/webhooks/test_properties.py does for Shopify's headers, done here
for all three senders and for the shapes an attacker picks: huge, unicode,
duplicated and missing headers; invalid UTF-8, deeply nested JSON, huge
numbers, empty bodies, *validly signed* hostile bodies; keys built to collide
or to inject SQL; timestamps far in the past or future. The contract: a
documented 4xx (400 malformed/missing/unstorable, 401 signature, 413 size),
never a 500, never a stored row without a valid signature.
"""

from __future__ import annotations

import http.client
import json
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing.webhooks import (
    SignedRequest,
    github_request,
    shopify_request,
    sign_github,
    sign_shopify,
    sign_standard_webhooks,
    standard_webhooks_request,
)
from django_pg_resilience.webhooks.exceptions import WebhookRejected
from django_pg_resilience.webhooks.verifiers import (
    GitHubVerifier,
    ShopifyVerifier,
    StandardWebhooksVerifier,
)
from tests.live_server import live_server
from tests.webhooks.views import GITHUB_SECRET, SHOPIFY_SECRET, STANDARD_SECRET

pytestmark = [pytest.mark.urls("tests.webhooks.urls")]

DOCUMENTED_REFUSALS = {400, 401, 413}
HYPOTHESIS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Header values as a WSGI server hands them to Django: latin-1 decoded text.
wire_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)
hostile_text = st.one_of(
    wire_text,
    st.text(max_size=40),  # any code point, surrogates included
    st.sampled_from(["", " ", "x" * 8192, "é" * 300, "\u202e\u200b", "v1,", "sha256=", "=" * 50]),
)
hostile_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"\xff\xfe\xfd",
            b"[" * 100_000 + b"]" * 100_000,
            b'{"a":' * 5000 + b"1" + b"}" * 5000,
            b"1" * 5000,
            b"[1e999]",
            b"[-1e999]",
            b"NaN",
            b'{"id": Infinity}',
            b'{"a": "\\u0000"}',
            b'"\\ud800"',
            b"\x00",
            json.dumps({"id": 10**300}).encode(),
        ]
    ),
)

VERIFIERS: dict[str, tuple[Any, str]] = {
    "shopify": (ShopifyVerifier(), SHOPIFY_SECRET),
    "github": (GitHubVerifier(), GITHUB_SECRET),
    "standard": (StandardWebhooksVerifier(), STANDARD_SECRET),
}


@pytest.mark.parametrize("name", list(VERIFIERS))
@HYPOTHESIS
@given(
    body=hostile_bodies,
    headers=st.dictionaries(
        st.sampled_from(
            [
                "X-Shopify-Hmac-Sha256",
                "X-Hub-Signature-256",
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
            ]
        ),
        hostile_text,
    ),
)
def test_verifiers_refuse_anything_unsigned_with_401_and_nothing_else(
    name: str, body: bytes, headers: dict[str, str]
) -> None:
    verifier, secret = VERIFIERS[name]
    with pytest.raises(WebhookRejected) as refused:
        verifier.verify(body, headers, [secret])
    assert refused.value.status == 401


def _signed(source: str, body: bytes, **extra: Any) -> SignedRequest:
    if source == "shopify":
        return shopify_request(body, SHOPIFY_SECRET, **extra)
    if source == "github":
        return github_request(body, GITHUB_SECRET, **extra)
    return standard_webhooks_request(body, STANDARD_SECRET, **extra)


PATHS = {"shopify": "/shopify/orders", "github": "/github/pushes", "standard": "/standard/orders"}


def _post(client: Client, source: str, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(PATHS[source], data=body, content_type="application/json", headers=headers)


def _assert_documented(response: Any) -> None:
    assert response.status_code in {200} | DOCUMENTED_REFUSALS, response.content[:300]
    if response.status_code != 200:
        assert "error" in json.loads(response.content)


@pytest.mark.django_db
@pytest.mark.parametrize("source", list(PATHS))
@HYPOTHESIS
@given(
    body=hostile_bodies,
    signed=st.booleans(),
    junk=st.dictionaries(
        st.sampled_from(
            [
                "X-Shopify-Webhook-Id",
                "X-GitHub-Delivery",
                "webhook-id",
                "X-Shopify-Triggered-At",
                "webhook-timestamp",
                "X-Shopify-Topic",
            ]
        ),
        hostile_text,
        max_size=3,
    ),
)
def test_views_answer_hostile_deliveries_with_a_documented_status(
    client: Client, source: str, body: bytes, signed: bool, junk: dict[str, str]
) -> None:
    request = _signed(source, body)
    headers = dict(request.headers)
    if not signed:
        signature = {
            "shopify": "X-Shopify-Hmac-Sha256",
            "github": "X-Hub-Signature-256",
            "standard": "webhook-signature",
        }[source]
        headers[signature] = "forged"
    # Junk in unsigned headers keeps the signature valid (Shopify, GitHub); in the
    # Standard Webhooks' signed headers it must break it.
    headers.update({k: v for k, v in junk.items() if v.isprintable()})
    before = WebhookEvent.objects.count()
    response = _post(client, source, body, headers)
    _assert_documented(response)
    if not signed:
        assert response.status_code == 401
    if response.status_code != 200:
        assert WebhookEvent.objects.count() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "malformed_json"),
        (b"\xff\xfe{}", "malformed_json"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed_json"),
        (b"1" * 5000, "malformed_json"),  # above Python's int digit limit
        (b"NaN", "malformed_json"),
        (b"[1e999]", "malformed_json"),  # Python reads inf: not the number sent
        (b'{"a": "\\u0000"}', "unstorable_payload"),
    ],
)
def test_signed_hostile_bodies_are_400_and_store_nothing(
    client: Client, body: bytes, code: str
) -> None:
    for source in PATHS:
        response = _post(client, source, body, dict(_signed(source, body).headers))
        assert response.status_code == 400, (source, response.content)
        assert json.loads(response.content)["error"] in {
            code,
            "malformed_json",
            "unstorable_payload",
        }
    assert WebhookEvent.objects.count() == 0


INJECTIONS = [
    "'; DROP TABLE django_pg_resilience_webhookevent; --",
    '" OR 1=1 --',
    "key') ON CONFLICT DO NOTHING; DELETE FROM testapp_item; --",
    "%s%s%s",
    "%(key)s",
    "$1",
    "\\x00",
]


@pytest.mark.django_db
def test_keys_built_to_inject_sql_are_stored_verbatim_and_harm_nothing(client: Client) -> None:
    for n, key in enumerate(INJECTIONS):
        request = shopify_request({"id": n}, SHOPIFY_SECRET, webhook_id=key)
        response = _post(client, "shopify", request.body, dict(request.headers))
        assert (response.status_code, json.loads(response.content)) == (
            200,
            {"status": "processed"},
        )
    stored = set(WebhookEvent.objects.filter(source="shopify").values_list("key", flat=True))
    assert stored == set(INJECTIONS)
    with connection.cursor() as cursor:  # the tables are all still there
        cursor.execute("SELECT count(*) FROM django_pg_resilience_webhookevent")
        assert cursor.fetchone() == (len(INJECTIONS),)


@pytest.mark.django_db
def test_keys_built_to_collide_stay_distinct(client: Client) -> None:
    composed = "café-order"
    lookalikes = [
        "ORDER-1",
        "order-1",  # case
        unicodedata.normalize("NFC", composed),
        unicodedata.normalize("NFD", composed),
        "\uff2f\uff32\uff24\uff25\uff32-1",  # full width ORDER
        "order-1\u200b",  # zero-width space
        "order-1 ",  # trailing space: stripped
    ]
    for n, key in enumerate(lookalikes):
        # Header values travel latin-1; non-latin-1 keys only reach a view as mojibake.
        wire_key = key.encode().decode("latin-1")
        request = shopify_request({"id": n}, SHOPIFY_SECRET, webhook_id=wire_key)
        response = _post(client, "shopify", request.body, dict(request.headers))
        expected = "duplicate" if key == "order-1 " else "processed"
        assert json.loads(response.content) == {"status": expected}, key
    # Every look-alike is its own event, except surrounding whitespace, which a
    # header value does not carry (the view strips it, like HTTP does).
    assert WebhookEvent.objects.count() == len(lookalikes) - 1


@pytest.mark.django_db
@pytest.mark.parametrize(("key", "status"), [("k" * 256, 400), ("a\x00b", 400), ("   ", 400)])
def test_unusable_keys_are_400_not_500(client: Client, key: str, status: int) -> None:
    request = shopify_request({"id": 1}, SHOPIFY_SECRET, webhook_id=key)
    response = _post(client, "shopify", request.body, dict(request.headers))
    assert response.status_code == status, response.content
    assert WebhookEvent.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "timestamp",
    [0, 1, -1, 10**12, 10**30, -(10**30), int(time.time()) - 3600, int(time.time()) + 3600],
)
def test_standard_webhooks_far_past_or_future_is_401(client: Client, timestamp: int) -> None:
    body = b'{"type": "order.created"}'
    headers = {
        "webhook-id": "msg_far",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhooks(body, STANDARD_SECRET, "msg_far", timestamp),
    }
    response = _post(client, "standard", body, headers)
    assert response.status_code == 401
    # Unix seconds are 1 to 12 digits: anything else is refused before any arithmetic.
    expected = "stale_timestamp" if 0 <= timestamp < 10**12 else "bad_timestamp"
    assert json.loads(response.content) == {"error": expected}
    assert WebhookEvent.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("timestamp", ["1e10", "0x10", " ", "12.5", "٣٣٣", "9" * 5000])
def test_standard_webhooks_unparsable_timestamp_is_401(client: Client, timestamp: str) -> None:
    body = b"{}"
    signature = sign_standard_webhooks(body, STANDARD_SECRET, "msg_x", 0).replace("0", "1")
    headers = {
        "webhook-id": "msg_x",
        "webhook-timestamp": timestamp,
        "webhook-signature": signature,
    }
    response = _post(client, "standard", body, headers)
    assert response.status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize(
    "triggered_at",
    [
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
        "9999-12-31T23:59:59Z",
        "2024-02-30T00:00:00Z",
        "not a date",
        "2024-01-01T00:00:00+99:00",
    ],
)
def test_shopify_far_or_broken_triggered_at_never_500(client: Client, triggered_at: str) -> None:
    request = shopify_request({"id": 5}, SHOPIFY_SECRET, webhook_id=f"t-{triggered_at}")
    headers = dict(request.headers, **{"X-Shopify-Triggered-At": triggered_at})
    response = _post(client, "shopify", request.body, headers)
    _assert_documented(response)


def _raw_post(url: str, path: str, body: bytes, headers: list[tuple[str, str]]) -> int:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", path)
        for name, value in [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *headers,
        ]:
            conn.putheader(name, value)
        conn.endheaders(body)
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.django_db(transaction=True)
def test_duplicated_headers_over_real_http_are_refused_or_deduplicated() -> None:
    body = json.dumps({"id": 9}).encode()
    good = sign_shopify(body, SHOPIFY_SECRET)
    cases: list[tuple[list[tuple[str, str]], Callable[[int], bool]]] = [
        # Two signature headers (one forged): never accepted as valid.
        (
            [
                ("X-Shopify-Hmac-Sha256", "forged"),
                ("X-Shopify-Hmac-Sha256", good),
                ("X-Shopify-Webhook-Id", "dup-1"),
            ],
            lambda s: s == 401,
        ),
        (
            [
                ("X-Shopify-Hmac-Sha256", good),
                ("X-Shopify-Hmac-Sha256", good),
                ("X-Shopify-Webhook-Id", "dup-2"),
            ],
            lambda s: s == 401,
        ),
        # Two ids: one key (the joined value), stored once, a duplicate the second time.
        (
            [
                ("X-Shopify-Hmac-Sha256", good),
                ("X-Shopify-Webhook-Id", "a"),
                ("X-Shopify-Webhook-Id", "b"),
            ],
            lambda s: s == 200,
        ),
        (
            [
                ("X-Shopify-Hmac-Sha256", good),
                ("X-Shopify-Webhook-Id", "a"),
                ("X-Shopify-Webhook-Id", "b"),
            ],
            lambda s: s == 200,
        ),
    ]
    gh_body = b'{"zen": 1}'
    cases.append(
        (
            [
                ("X-Hub-Signature-256", sign_github(gh_body, GITHUB_SECRET)),
                ("X-Hub-Signature-256", "sha256=00"),
                ("X-GitHub-Delivery", "d"),
            ],
            lambda s: s == 401,
        )
    )
    with live_server() as url:
        statuses = []
        for n, (headers, expected) in enumerate(cases):
            path = "/github/pushes" if n == len(cases) - 1 else "/shopify/orders"
            status = _raw_post(url, path, gh_body if "github" in path else body, headers)
            statuses.append(status)
            assert expected(status), (n, status)
    assert WebhookEvent.objects.count() == 1
