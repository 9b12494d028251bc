"""The read-your-writes cookie hides the position, refuses tampering, is Secure by convention."""

from __future__ import annotations

import base64

from django.http import HttpResponse
from django.test import RequestFactory
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience.routers.position_cookie import seal, unseal, write_position
from django_pg_resilience.routers.positions import format_lsn, parse_lsn

POSITION = parse_lsn("16/B374D848")
assert POSITION is not None


def test_the_value_hides_the_position_and_gives_it_back() -> None:
    first, second = seal(POSITION), seal(POSITION)
    assert unseal(first, max_age=60) == POSITION == unseal(second, max_age=60)
    assert first != second  # a fresh nonce each time: nothing to compare across visits
    payload = first.split(":")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert POSITION.to_bytes(8, "big") not in raw
    for shown in (format_lsn(POSITION), f"{POSITION:X}", f"{POSITION:x}", str(POSITION)):
        assert shown not in first


def test_a_tampered_forged_or_expired_value_is_refused() -> None:
    value = seal(POSITION)
    payload, rest = value.split(":", 1)
    flipped = ("A" if payload[0] != "A" else "B") + payload[1:]
    assert unseal(f"{flipped}:{rest}", max_age=60) is None
    assert unseal(format_lsn(POSITION), max_age=60) is None  # the old, readable format
    assert unseal("", max_age=60) is None and unseal(None, max_age=60) is None
    assert unseal(value, max_age=-1) is None  # older than max_age


def test_a_key_rotation_keeps_the_cookies_of_the_old_key(settings: SettingsWrapper) -> None:
    settings.SECRET_KEY = "the-old-key-" + "x" * 40
    value = seal(POSITION)
    settings.SECRET_KEY = "the-new-key-" + "y" * 40
    assert unseal(value, max_age=60) is None
    settings.SECRET_KEY_FALLBACKS = ["the-old-key-" + "x" * 40]
    assert unseal(value, max_age=60) == POSITION


def _cookie(settings: SettingsWrapper, *, https: bool = False, secure: bool | None = None) -> dict:
    request = RequestFactory().get("/", secure=https)
    response = HttpResponse()
    write_position(request, response, "wal", POSITION, max_age=300, secure=secure)
    morsel = response.cookies["wal"]
    return {"secure": bool(morsel["secure"]), "samesite": morsel["samesite"],
            "httponly": bool(morsel["httponly"]), "max-age": morsel["max-age"]}  # fmt: skip


def test_secure_follows_the_sites_cookie_settings_not_only_the_request(
    settings: SettingsWrapper,
) -> None:
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    assert _cookie(settings) == {"secure": False, "samesite": "Lax", "httponly": True,
                                 "max-age": 300}  # fmt: skip
    assert _cookie(settings, https=True)["secure"] is True
    # Behind a proxy that terminates TLS the request looks like http: the setting decides.
    settings.SESSION_COOKIE_SECURE = True
    assert _cookie(settings)["secure"] is True
    settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE = False, True
    assert _cookie(settings)["secure"] is True
    settings.CSRF_COOKIE_SECURE = False
    assert _cookie(settings, secure=True)["secure"] is True
    settings.SESSION_COOKIE_SECURE = True
    assert _cookie(settings, secure=False)["secure"] is False
