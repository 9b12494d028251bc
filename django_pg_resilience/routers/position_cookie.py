"""The read-your-writes cookie: a client's last write position, encrypted, signed, Secure.

A WAL position is how many bytes of WAL the database has written: two visits
tell a visitor the site's write rate, nothing they need to read. So the
cookie carries it encrypted (an HMAC-SHA256 keystream over a random nonce, the
key derived from ``SECRET_KEY``) and signed with Django's
:class:`~django.core.signing.TimestampSigner` (encrypt-then-sign: a tampered or
expired cookie is refused before anything is decrypted). ``SECRET_KEY_FALLBACKS``
still open cookies made before a key rotation, like Django's own cookies.

``Secure`` follows the site's cookie settings (``SESSION_COOKIE_SECURE`` or
``CSRF_COOKIE_SECURE``) rather than the request alone: behind a proxy that
terminates TLS, ``request.is_secure()`` is False unless
``SECURE_PROXY_SSL_HEADER`` is set. ``READ_YOUR_WRITES_COOKIE_SECURE`` says
otherwise when needed. Always ``HttpOnly`` and ``SameSite=Lax``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponseBase
from django.utils.crypto import salted_hmac

__all__ = ["cookie_secure", "read_position", "seal", "unseal", "write_position"]

_SIGN_SALT = "django_pg_resilience.routers.read_your_writes"
_KEYSTREAM_SALT = "django_pg_resilience.routers.read_your_writes.keystream"
_NONCE_BYTES = 12
_POSITION_BYTES = 8


def _keys() -> list[str | bytes]:
    return [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())]


def _signer(key: str | bytes) -> signing.TimestampSigner:
    # No fallback keys here: unseal() tries each key itself, to decrypt with the one
    # that verified.
    return signing.TimestampSigner(key=key, salt=_SIGN_SALT, fallback_keys=[])


def _keystream(nonce: bytes, key: str | bytes) -> bytes:
    stream = salted_hmac(_KEYSTREAM_SALT, nonce, secret=key, algorithm="sha256").digest()
    return stream[:_POSITION_BYTES]


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


def seal(position: int) -> str:
    """The cookie value of ``position`` (a fresh nonce each time: two values never match)."""
    key = settings.SECRET_KEY
    nonce = secrets.token_bytes(_NONCE_BYTES)
    hidden = _xor(position.to_bytes(_POSITION_BYTES, "big"), _keystream(nonce, key))
    payload = base64.urlsafe_b64encode(nonce + hidden).decode("ascii").rstrip("=")
    return _signer(key).sign(payload)


def unseal(value: str | None, max_age: float) -> int | None:
    """The position in a cookie value; None when it is missing, tampered with, or expired."""
    if not value:
        return None
    for key in _keys():
        try:
            payload = _signer(key).unsign(value, max_age=timedelta(seconds=max_age))
        except signing.BadSignature:  # SignatureExpired included
            continue
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_BYTES + _POSITION_BYTES:
            return None
        nonce, hidden = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        return int.from_bytes(_xor(hidden, _keystream(nonce, key)), "big")
    return None


def cookie_secure(request: HttpRequest, configured: bool | None) -> bool:
    """Whether the cookie is ``Secure``: ``configured`` when given, else as the site's
    session or CSRF cookie is, or when this request came over https."""
    if configured is not None:
        return configured or request.is_secure()
    site_secure = bool(getattr(settings, "SESSION_COOKIE_SECURE", False)) or bool(
        getattr(settings, "CSRF_COOKIE_SECURE", False)
    )
    return site_secure or request.is_secure()


def read_position(request: HttpRequest, name: str, max_age: float) -> int | None:
    """The position the client's cookie ``name`` carries, if any and valid."""
    return unseal(request.COOKIES.get(name), max_age)


def write_position(
    request: HttpRequest,
    response: HttpResponseBase,
    name: str,
    position: int,
    *,
    max_age: float,
    secure: bool | None,
) -> None:
    """Set cookie ``name`` to ``position`` on ``response``."""
    response.set_cookie(
        name,
        seal(position),
        max_age=int(max_age),
        secure=cookie_secure(request, secure),
        httponly=True,
        samesite="Lax",
    )
