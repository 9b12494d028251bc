"""System checks of the 503 middleware (pg_resilience.W201, W202)."""

from __future__ import annotations

from typing import Any

from django_pg_resilience.checks import check_unavailable_middleware
from tests.middleware.conftest import MIDDLEWARE_PATH


def ids(settings: Any) -> list[str | None]:
    return [message.id for message in check_unavailable_middleware()]


def test_first_in_middleware_is_quiet(settings: Any) -> None:
    assert ids(settings) == []


def test_after_a_database_free_middleware_is_quiet(settings: Any) -> None:
    settings.MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        MIDDLEWARE_PATH,
        "django.contrib.sessions.middleware.SessionMiddleware",
    ]
    assert ids(settings) == []


def test_after_the_session_middleware_warns_and_says_how_to_fix(settings: Any) -> None:
    settings.MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        MIDDLEWARE_PATH,
    ]

    (message,) = check_unavailable_middleware()

    assert message.id == "pg_resilience.W201"
    assert "SessionMiddleware" in message.msg
    assert "SecurityMiddleware" not in message.msg
    assert message.hint is not None and "top of MIDDLEWARE" in message.hint


def test_not_installed_is_not_checked(settings: Any) -> None:
    settings.MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
    settings.TEMPLATES = []
    assert ids(settings) == []


def test_template_that_cannot_be_loaded_warns(settings: Any) -> None:
    settings.TEMPLATES = [
        {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": False}
    ]

    (message,) = check_unavailable_middleware()

    assert message.id == "pg_resilience.W202"
    assert message.hint is not None and "APP_DIRS" in message.hint


def test_registered_with_django_checks(settings: Any) -> None:
    from django.core import checks

    settings.MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware", MIDDLEWARE_PATH]
    found = [m.id for m in checks.run_checks() if m.id and m.id.startswith("pg_resilience.W2")]
    assert found == ["pg_resilience.W201"]
