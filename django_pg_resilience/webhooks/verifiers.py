"""Signature verifiers: pure functions of the raw body, the headers and the secrets.

Each verifier raises :class:`~django_pg_resilience.webhooks.exceptions.WebhookRejected`
(401) when the delivery is not signed by one of the secrets, and returns
``None`` otherwise. They never touch the database, never parse the body, and
compare in constant time (:func:`hmac.compare_digest`) against every secret,
so a secret being rotated keeps working until it is removed from the list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from django.core.exceptions import ImproperlyConfigured

from django_pg_resilience.webhooks.exceptions import unauthorized

__all__ = ["GitHubVerifier", "ShopifyVerifier", "StandardWebhooksVerifier", "Verifier"]


class Verifier(Protocol):
    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
        """Raise ``WebhookRejected`` unless ``body`` is signed by one of ``secrets``."""


def _as_bytes(value: str) -> bytes:
    # Header values come from the client: any code point must compare (and
    # fail) without raising, and compare_digest wants bytes for non-ASCII.
    return value.encode("utf-8", "surrogatepass")


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    # One-shot: no HMAC object per delivery and secret.
    return hmac.digest(key, message, hashlib.sha256)


def _require_secrets(secrets: Sequence[str]) -> None:
    if not secrets:
        raise unauthorized("no_secret", "the view has no secret configured (check E301)")


class _HeaderSignatureVerifier:
    """One header holding an HMAC-SHA256 of the raw body; subclasses say how it is written."""

    header: str

    def expected(self, secret: bytes, body: bytes) -> bytes:
        raise NotImplementedError

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
        _require_secrets(secrets)
        provided = headers.get(self.header)
        if not provided:
            raise unauthorized("missing_signature", f"no {self.header} header")
        given = _as_bytes(provided.strip())
        # Every secret is compared (no early exit), each in constant time.
        matches = [
            hmac.compare_digest(self.expected(secret.encode(), body), given) for secret in secrets
        ]
        if not any(matches):
            raise unauthorized("bad_signature", f"{self.header} matches no configured secret")


class ShopifyVerifier(_HeaderSignatureVerifier):
    """``X-Shopify-Hmac-Sha256``: base64 HMAC-SHA256 of the raw body, keyed with the app secret."""

    header = "X-Shopify-Hmac-Sha256"

    def expected(self, secret: bytes, body: bytes) -> bytes:
        return base64.b64encode(_hmac_sha256(secret, body))


class GitHubVerifier(_HeaderSignatureVerifier):
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``."""

    header = "X-Hub-Signature-256"

    def expected(self, secret: bytes, body: bytes) -> bytes:
        return b"sha256=" + _hmac_sha256(secret, body).hex().encode()


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_`` + base64 (prefix optional)."""
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(
            "A Standard Webhooks secret is 'whsec_' followed by base64, as the sender shows it."
        ) from None


class StandardWebhooksVerifier:
    """Standard Webhooks: ``webhook-signature`` over ``id.timestamp.body``, +-5 minute tolerance.

    ``webhook-signature`` holds space-separated ``v1,<base64>`` entries (a sender
    rotating its secret signs with both); any entry matching any secret passes.
    """

    #: Seconds a timestamp may be off from now, in either direction.
    tolerance: float = 300.0

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
        _require_secrets(secrets)
        msg_id = headers.get("webhook-id")
        timestamp = headers.get("webhook-timestamp")
        signature = headers.get("webhook-signature")
        if not signature:
            raise unauthorized("missing_signature", "no webhook-signature header")
        if not msg_id or not timestamp:
            raise unauthorized("missing_signature", "webhook-id and webhook-timestamp are signed")
        try:
            sent_at = int(timestamp)
        except ValueError:
            raise unauthorized("bad_timestamp", "webhook-timestamp is not Unix seconds") from None
        if abs(self.clock() - sent_at) > self.tolerance:
            raise unauthorized("stale_timestamp", "webhook-timestamp is outside the tolerance")
        signed = _as_bytes(f"{msg_id}.{timestamp}.") + body
        given = [
            _as_bytes(entry.partition(",")[2])
            for entry in signature.split()
            if entry.startswith("v1,")
        ]
        ok = False
        for secret in secrets:
            expected = base64.b64encode(_hmac_sha256(standard_webhooks_key(secret), signed))
            for candidate in given:
                # No short-circuit: the time taken does not depend on which entry matched.
                ok |= hmac.compare_digest(expected, candidate)
        if not ok:
            raise unauthorized("bad_signature", "webhook-signature matches no configured secret")
