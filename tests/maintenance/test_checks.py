"""System checks of the maintenance settings: each names what is wrong and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience.checks import check_maintenance


def ids(settings: SettingsWrapper, **options: Any) -> list[str]:
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, **options}
    return [message.id or "" for message in check_maintenance()]


def test_defaults_are_clean(settings: SettingsWrapper) -> None:
    assert ids(settings) == []


def test_bad_bypass_address_is_an_error_naming_it(settings: SettingsWrapper) -> None:
    settings.PG_RESILIENCE = {
        **settings.PG_RESILIENCE,
        "MAINTENANCE_BYPASS_IPS": ["10.0.0.0/8", "10.0.0.300", "office"],
    }

    (message,) = check_maintenance()

    assert message.id == "pg_resilience.E601"
    assert "'10.0.0.300'" in message.msg and "'office'" in message.msg
    assert "'10.0.0.0/8'" not in message.msg


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("django.core.cache.backends.db.DatabaseCache", "pg_resilience.E602"),
        ("django.core.cache.backends.locmem.LocMemCache", "pg_resilience.W601"),
        ("django.core.cache.backends.dummy.DummyCache", "pg_resilience.W601"),
    ],
)
def test_a_cache_that_cannot_carry_the_switch(
    settings: SettingsWrapper, backend: str, expected: str
) -> None:
    settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": "somewhere"}}

    assert ids(settings, MAINTENANCE_CACHE="default") == [expected]


def test_an_unknown_cache_alias(settings: SettingsWrapper) -> None:
    assert ids(settings, MAINTENANCE_CACHE="redis") == ["pg_resilience.E602"]


def test_a_shared_cache_is_clean(settings: SettingsWrapper, tmp_path: Path) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path),
        }
    }

    assert ids(settings, MAINTENANCE_CACHE="default") == []


def test_missing_directory_of_the_switch_file(settings: SettingsWrapper, tmp_path: Path) -> None:
    assert ids(settings, MAINTENANCE_FILE=str(tmp_path / "nope" / "switch")) == [
        "pg_resilience.W602"
    ]


def test_bypass_path_without_a_leading_slash(settings: SettingsWrapper) -> None:
    assert ids(settings, MAINTENANCE_BYPASS_PATHS=["healthz"]) == ["pg_resilience.W603"]


def test_retry_after_zero(settings: SettingsWrapper) -> None:
    assert ids(settings, MAINTENANCE_RETRY_AFTER=0) == ["pg_resilience.E603"]


def test_wrong_types_are_reported_by_the_settings_check(settings: SettingsWrapper) -> None:
    from django_pg_resilience.checks import check_settings

    settings.PG_RESILIENCE = {"MAINTENANCE_BYPASS_IPS": "10.0.0.0/8"}

    assert [message.id for message in check_settings()] == ["pg_resilience.E002"]
    assert check_maintenance() == []
