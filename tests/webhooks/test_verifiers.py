"""The verifiers as pure units: known vectors, rotation, tampering, timestamps."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_pg_resilience.testing.webhooks import (
    github_request,
    new_standard_webhooks_secret,
    shopify_request,
    standard_webhooks_request,
)
from django_pg_resilience.webhooks import WebhookRejected
from django_pg_resilience.webhooks.verifiers import (
    GitHubVerifier,
    ShopifyVerifier,
    StandardWebhooksVerifier,
    standard_webhooks_key,
)

BODY = b'{"id":1001,"email":"a@example.com"}'


def rejected_code(verify: object, *args: object) -> str:
    with pytest.raises(WebhookRejected) as info:
        verify(*args)  # type: ignore[operator]
    assert info.value.status == 401
    return info.value.code


def test_shopify_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    expected = base64.b64encode(hmac.new(b"s3cret", BODY, hashlib.sha256).digest()).decode()
    ShopifyVerifier().verify(BODY, {"X-Shopify-Hmac-Sha256": expected}, ["s3cret"])


def test_shopify_accepts_any_secret_of_a_rotation_and_refuses_others() -> None:
    headers = shopify_request(BODY, "old").headers
    ShopifyVerifier().verify(BODY, headers, ["new", "old"])
    assert rejected_code(ShopifyVerifier().verify, BODY, headers, ["new"]) == "bad_signature"


def test_shopify_refuses_a_tampered_body_and_a_missing_header() -> None:
    headers = shopify_request(BODY, "k").headers
    assert rejected_code(ShopifyVerifier().verify, BODY + b" ", headers, ["k"]) == "bad_signature"
    assert rejected_code(ShopifyVerifier().verify, BODY, {}, ["k"]) == "missing_signature"


def test_no_secret_configured_refuses_everything() -> None:
    headers = shopify_request(BODY, "").headers
    assert rejected_code(ShopifyVerifier().verify, BODY, headers, []) == "no_secret"


def test_non_ascii_signature_header_is_refused_not_an_error() -> None:
    headers = {"X-Shopify-Hmac-Sha256": "é" * 44}
    assert rejected_code(ShopifyVerifier().verify, BODY, headers, ["k"]) == "malformed_signature"


def test_github_signature_is_sha256_hex() -> None:
    digest = hmac.new(b"gh", BODY, hashlib.sha256).hexdigest()
    GitHubVerifier().verify(BODY, {"X-Hub-Signature-256": f"sha256={digest}"}, ["gh"])
    assert (
        rejected_code(GitHubVerifier().verify, BODY, {"X-Hub-Signature-256": digest}, ["gh"])
        == "bad_signature"
    )
    headers = github_request(BODY, "gh").headers
    GitHubVerifier().verify(BODY, headers, ["gh"])


def test_standard_webhooks_reference_vector() -> None:
    # The example from the Standard Webhooks spec / reference library tests.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    timestamp = 1614265330
    body = b'{"test": 2432232314}'
    signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    verifier = StandardWebhooksVerifier(clock=lambda: timestamp + 10)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,bm90LXRoaXM= {signature}",
    }
    verifier.verify(body, headers, [secret])


def test_standard_webhooks_timestamp_tolerance_is_five_minutes_both_ways() -> None:
    secret = new_standard_webhooks_secret()
    now = 1_700_000_000
    for offset, ok in ((299, True), (-299, True), (301, False), (-301, False)):
        request = standard_webhooks_request(BODY, secret, timestamp=now + offset)
        verifier = StandardWebhooksVerifier(clock=lambda: now)
        if ok:
            verifier.verify(BODY, request.headers, [secret])
        else:
            assert rejected_code(verifier.verify, BODY, request.headers, [secret]) == (
                "stale_timestamp"
            )


def test_standard_webhooks_id_is_signed() -> None:
    secret = new_standard_webhooks_secret()
    headers = dict(standard_webhooks_request(BODY, secret).headers)
    headers["webhook-id"] = "msg_other"
    verifier = StandardWebhooksVerifier()
    assert rejected_code(verifier.verify, BODY, headers, [secret]) == "bad_signature"
    headers.pop("webhook-timestamp")
    assert rejected_code(verifier.verify, BODY, headers, [secret]) == "missing_signature"


def test_standard_webhooks_bad_secret_is_never_used() -> None:
    request = standard_webhooks_request(BODY, new_standard_webhooks_secret())
    with pytest.raises(ImproperlyConfigured, match="whsec_"):
        standard_webhooks_key("whsec_not base64!")
    # At request time a bad secret is skipped, not a 500: with nothing else, a 401.
    verify = StandardWebhooksVerifier().verify
    assert rejected_code(verify, BODY, request.headers, ["whsec_not base64!"]) == "no_secret"
