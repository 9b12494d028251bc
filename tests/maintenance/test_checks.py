"""System checks of the maintenance settings: each names what is wrong and the fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import CheckMessage
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience.checks import check_maintenance


def check_maintenance_with(settings: SettingsWrapper, **options: Any) -> list[CheckMessage]:
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, **options}
    return check_maintenance()


def ids(settings: SettingsWrapper, **options: Any) -> list[str]:
    return [message.id or "" for message in check_maintenance_with(settings, **options)]


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


@pytest.mark.parametrize(
    "options",
    [
        {"MAINTENANCE_BYPASS_PATHS": ["/healthz", ""]},
        {"MAINTENANCE_BYPASS_PATHS": ["/"]},
        {"MAINTENANCE_STAFF_WRITE_PATHS": [""]},
        {"HEALTH_METRICS_PATH": ""},
    ],
)
def test_an_empty_path_entry_is_reported_as_matching_everything(
    settings: SettingsWrapper, options: dict[str, Any]
) -> None:
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, **options}

    (message,) = check_maintenance()

    assert message.id == "pg_resilience.W604"
    assert "every path" in message.msg
    assert "ignored" in message.msg


def test_no_metrics_path_is_clean(settings: SettingsWrapper) -> None:
    assert ids(settings, HEALTH_METRICS_PATH=None) == []


def test_a_staff_write_path_without_a_leading_slash(settings: SettingsWrapper) -> None:
    assert ids(settings, MAINTENANCE_STAFF_WRITE_PATHS=["admin"]) == ["pg_resilience.W603"]


def test_no_switch_file_and_no_base_dir_is_an_error_with_the_middleware(
    settings: SettingsWrapper,
) -> None:
    del settings.BASE_DIR
    settings.PG_RESILIENCE = {}

    (message,) = check_maintenance()

    assert message.id == "pg_resilience.E604"
    assert "MAINTENANCE_FILE" in (message.hint or "")


def test_a_world_writable_directory_without_sticky_bit_is_an_error(
    settings: SettingsWrapper, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)

    assert ids(settings, MAINTENANCE_FILE=str(shared / "switch")) == ["pg_resilience.E605"]


def test_a_sticky_world_writable_directory_like_tmp_is_a_warning(
    settings: SettingsWrapper, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)

    assert ids(settings, MAINTENANCE_FILE=str(shared / "switch")) == ["pg_resilience.W605"]


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_a_switch_path_that_is_not_a_regular_file(
    settings: SettingsWrapper, switch_file: Path, tmp_path: Path, kind: str
) -> None:
    if kind == "symlink":
        (tmp_path / "target").write_text("")
        switch_file.symlink_to(tmp_path / "target")
    elif kind == "fifo":
        os.mkfifo(switch_file)
    else:
        switch_file.mkdir()

    (message,) = check_maintenance()

    assert message.id == "pg_resilience.W606"
    assert str(switch_file) in message.msg


def test_a_relative_switch_file_depends_on_the_working_directory(
    settings: SettingsWrapper,
) -> None:
    assert ids(settings, MAINTENANCE_FILE="maintenance") == ["pg_resilience.W607"]


def test_a_switch_owned_by_another_user_in_a_sticky_directory_is_named(
    settings: SettingsWrapper, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    planted = shared / "switch"
    planted.write_text("")
    os.chown(planted, 65534, 65534)  # nobody: another local user

    (message,) = check_maintenance_with(settings, MAINTENANCE_FILE=str(planted))

    assert message.id == "pg_resilience.W605"
    assert "belongs to uid 65534" in message.msg
