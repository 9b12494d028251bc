"""Signature verifiers: pure functions of the raw body, the headers and the secrets.

Each verifier raises :class:`~django_pg_resilience.webhooks.exceptions.WebhookRejected`
(401) when the delivery is not signed by one of the secrets, and returns
``None`` otherwise. They never touch the database, never parse the body, and
compare in constant time (:func:`hmac.compare_digest`) against every secret,
so a secret being rotated keeps working until it is removed from the list.

They fail closed: an empty or whitespace-only secret (``env("OLD", default="")``)
and a Standard Webhooks secret that decodes to no key are never used, since
anyone can sign with an empty key; with no usable secret left every delivery
is refused (``no_secret``). A signature header that is not plain ASCII, or a
``webhook-timestamp`` that is not 1 to 12 digits, is refused before any
arithmetic on it.

Standard Webhooks deliveries come under two sets of header names: the spec's
``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature``, and Svix's
``svix-id`` / ``svix-timestamp`` / ``svix-signature`` for the same scheme (Clerk,
Resend and other Svix-based senders). :func:`standard_webhooks_headers` picks
one whole set per delivery; see there for which and why.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

from django.core.exceptions import ImproperlyConfigured

from django_pg_resilience.webhooks.exceptions import NO_SECRET_CODE, unauthorized

__all__ = [
    "STANDARD_WEBHOOKS_HEADERS",
    "SVIX_HEADERS",
    "GitHubVerifier",
    "ShopifyVerifier",
    "StandardWebhooksHeaders",
    "StandardWebhooksVerifier",
    "Verifier",
    "standard_webhooks_headers",
    "standard_webhooks_key",
    "usable_secrets",
]

#: Unix seconds as the Standard Webhooks spec writes them. Twelve digits reach
#: the year 33658; anything longer is an attack on the arithmetic, not a time.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class Verifier(Protocol):
    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
        """Raise ``WebhookRejected`` unless ``body`` is signed by one of ``secrets``."""


def _ascii_header(headers: Mapping[str, str], name: str, code: str) -> str:
    """The stripped value of header ``name``: 401 ``code`` unless it is printable ASCII.

    Under WSGI a header arrives as latin-1 text: a sender's UTF-8 bytes become
    other characters, and could never match what the sender signed. Refusing
    them here makes that a clear code instead of a failed comparison.
    """
    value = (headers.get(name) or "").strip()
    if not (value.isascii() and value.isprintable()):
        raise unauthorized(code, f"{name} is not printable ASCII")
    return value


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    # One-shot: no HMAC object per delivery and secret.
    return hmac.digest(key, message, hashlib.sha256)


def usable_secrets(secrets: Sequence[str]) -> list[str]:
    """The secrets that may sign: strings that are not empty or whitespace only.

    ``secrets=[env("OLD_SECRET", default="")]`` gives ``[""]``: an HMAC keyed
    with nothing, which anyone can compute. Such entries are dropped, never used.
    """
    return [secret for secret in secrets if isinstance(secret, str) and secret.strip()]


def _no_usable_secret() -> Exception:
    return unauthorized(
        NO_SECRET_CODE, "the view has no usable signing secret (check pg_resilience.E301)"
    )


class _HeaderSignatureVerifier:
    """One header holding an HMAC-SHA256 of the raw body; subclasses say how it is written."""

    header: str

    def expected(self, secret: bytes, body: bytes) -> bytes:
        raise NotImplementedError

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
        keys = [secret.encode() for secret in usable_secrets(secrets)]
        if not keys:
            raise _no_usable_secret()
        provided = _ascii_header(headers, self.header, "malformed_signature")
        if not provided:
            raise unauthorized("missing_signature", f"no {self.header} header")
        given = provided.encode("ascii")
        # Every secret is compared (no early exit), each in constant time.
        matches = [hmac.compare_digest(self.expected(key, body), given) for key in keys]
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
    """The HMAC key of a Standard Webhooks secret: ``whsec_`` + base64 (prefix optional).

    Raises ImproperlyConfigured when it is not base64 or decodes to no key at
    all (``"whsec_" + env("SECRET", default="")``).
    """
    encoded = secret.strip().removeprefix("whsec_")
    # Some senders show the key without its base64 padding; the official
    # libraries accept it, so the same secret must work here.
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(
            "A Standard Webhooks secret is 'whsec_' followed by base64, as the sender shows it."
        ) from None
    if not key:
        raise ImproperlyConfigured(
            "A Standard Webhooks secret decodes to an empty key: 'whsec_' must be followed "
            "by the base64 key the sender shows (is the environment variable set?)."
        )
    return key


def _standard_webhooks_keys(secrets: Sequence[str]) -> list[bytes]:
    keys = []
    for secret in usable_secrets(secrets):
        try:
            keys.append(standard_webhooks_key(secret))
        except ImproperlyConfigured:
            continue  # never used; pg_resilience.E303 names it
    return keys


class StandardWebhooksHeaders(NamedTuple):
    """The names of the three signed headers of one Standard Webhooks delivery."""

    id: str
    timestamp: str
    signature: str


#: The spec's header names.
STANDARD_WEBHOOKS_HEADERS = StandardWebhooksHeaders(
    "webhook-id", "webhook-timestamp", "webhook-signature"
)
#: Svix's names for the same headers and the same signature.
SVIX_HEADERS = StandardWebhooksHeaders("svix-id", "svix-timestamp", "svix-signature")


def standard_webhooks_headers(headers: Mapping[str, str]) -> StandardWebhooksHeaders:
    """The header set a delivery uses: ``webhook-*`` when any of them is present, else ``svix-*``.

    One whole set, never a mix: the id that is signed must be the id the
    delivery is deduplicated and stored under, or an unsigned header could pick
    the idempotency key. The spec's names win when both sets are present
    because they are the standard's own (the official libraries read only
    them), so a sender that sends both signs for them; a half-present
    ``webhook-*`` set is refused rather than completed from the other set.
    """
    if any(headers.get(name) for name in STANDARD_WEBHOOKS_HEADERS):
        return STANDARD_WEBHOOKS_HEADERS
    if any(headers.get(name) for name in SVIX_HEADERS):
        return SVIX_HEADERS
    return STANDARD_WEBHOOKS_HEADERS


class StandardWebhooksVerifier:
    """Standard Webhooks: ``webhook-signature`` over ``id.timestamp.body``, +-5 minute tolerance.

    ``webhook-signature`` holds space-separated ``v1,<base64>`` entries (a sender
    rotating its secret signs with both); any entry matching any secret passes.
    Svix's ``svix-*`` names are read too (:func:`standard_webhooks_headers`).
    """

    #: Seconds a timestamp may be off from now, in either direction.
    tolerance: float = 300.0

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def verify(self, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
        keys = _standard_webhooks_keys(secrets)
        if not keys:
            raise _no_usable_secret()
        names = standard_webhooks_headers(headers)
        signature = _ascii_header(headers, names.signature, "malformed_signature")
        msg_id = _ascii_header(headers, names.id, "malformed_id")
        timestamp = _ascii_header(headers, names.timestamp, "bad_timestamp")
        if not signature:
            raise unauthorized("missing_signature", f"no {names.signature} header")
        if not msg_id or not timestamp:
            raise unauthorized("missing_signature", f"{names.id} and {names.timestamp} are signed")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise unauthorized("bad_timestamp", f"{names.timestamp} is not Unix seconds")
        if abs(self.clock() - int(timestamp)) > self.tolerance:
            raise unauthorized("stale_timestamp", f"{names.timestamp} is outside the tolerance")
        signed = f"{msg_id}.{timestamp}.".encode("ascii") + body
        given = [
            entry.partition(",")[2].encode("ascii")
            for entry in signature.split()
            if entry.startswith("v1,")
        ]
        ok = False
        for key in keys:
            expected = base64.b64encode(_hmac_sha256(key, signed))
            for candidate in given:
                # No short-circuit: the time taken does not depend on which entry matched.
                ok |= hmac.compare_digest(expected, candidate)
        if not ok:
            raise unauthorized("bad_signature", f"{names.signature} matches no configured secret")
