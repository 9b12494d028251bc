"""The backend's system checks (pg_resilience.W101..W105, E104)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from django_pg_resilience.checks import check_backend_settings

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


def _ids(databases: dict[str, Any]) -> list[str]:
    with override_settings(DATABASES=databases):
        return sorted(message.id or "" for message in check_backend_settings())


def _entry(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "ENGINE": "django_pg_resilience.backend",
        "NAME": "app",
        "OPTIONS": {},
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
    }
    entry.update(overrides)
    return entry


def test_defaults_are_clean() -> None:
    assert _ids({"default": _entry()}) == []


def test_stock_backend_without_connect_timeout() -> None:
    assert _ids({"default": _entry(ENGINE="django.db.backends.postgresql")}) == [
        "pg_resilience.W101"
    ]


@pytest.mark.parametrize("timeout", [0, 1, "0"])
def test_connect_timeout_that_waits_forever_or_is_below_libpq_minimum(timeout: Any) -> None:
    entry = _entry(OPTIONS={"connect_timeout": timeout})
    assert _ids({"default": entry}) == ["pg_resilience.W102"]


def test_persistent_connections_without_health_checks() -> None:
    assert _ids({"default": _entry(CONN_MAX_AGE=None)}) == ["pg_resilience.W103"]
    assert _ids({"default": _entry(CONN_MAX_AGE=60, CONN_HEALTH_CHECKS=True)}) == []


def test_pool_with_persistent_connections() -> None:
    entry = _entry(OPTIONS={"pool": True}, CONN_MAX_AGE=60, CONN_HEALTH_CHECKS=True)
    assert _ids({"default": entry}) == ["pg_resilience.E104"]


def test_long_deadline_on_a_web_alias() -> None:
    entry = _entry(OPTIONS={"resilience": {"deadline": 10}})
    assert _ids({"default": entry}) == ["pg_resilience.W105"]


def test_messages_say_how_to_fix() -> None:
    with override_settings(DATABASES={"default": _entry(CONN_MAX_AGE=None)}):
        (message,) = check_backend_settings()
    assert "CONN_HEALTH_CHECKS" in (message.hint or "")
