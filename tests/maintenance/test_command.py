"""``manage.py maintenance`` in another process; this process's live server sees it."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import maintenance
from tests.live_server import Reply, live_server, send
from tests.maintenance.conftest import manage


@pytest.fixture
def live_url(settings: SettingsWrapper) -> Iterator[str]:
    # The default interval: what a deployed process does.
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, "MAINTENANCE_CHECK_INTERVAL": 0.5}
    with live_server() as url:
        yield url


def get(url: str) -> Reply:
    return send(urllib.request.Request(url, headers={"Accept": "application/json"}))  # noqa: S310


def wait_for_status(url: str, status: int, timeout: float = 10.0) -> Reply:
    deadline = time.monotonic() + timeout
    while True:
        reply = get(url)
        if reply.status == status or time.monotonic() > deadline:
            return reply
        time.sleep(0.05)


@pytest.mark.parametrize("kind", ["file", "cache"])
def test_on_and_off_from_another_process_reach_the_server(
    kind: str, switch_file: Path, tmp_path: Path, settings: SettingsWrapper, live_url: str
) -> None:
    env = {"MAINTENANCE_TEST_FILE": str(switch_file)}
    if kind == "cache":
        # A file-based cache is shared by the processes of one machine, like Redis is by all.
        cache_dir = tmp_path / "cache"
        env = {"MAINTENANCE_TEST_CACHE": "shared", "MAINTENANCE_TEST_CACHE_DIR": str(cache_dir)}
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "shared": {
                "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": str(cache_dir),
            },
        }
        settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, "MAINTENANCE_CACHE": "shared"}
    page = f"{live_url}/plain/"
    assert get(page).status == 200

    turned_on = manage("on", "--retry-after", "7", "--message", "Switchover", env=env)

    assert turned_on.returncode == 0, turned_on.stderr
    assert "Maintenance is on" in turned_on.stdout
    reply = wait_for_status(page, 503)
    assert reply.status == 503
    assert reply.headers["Retry-After"] == "7"
    assert json.loads(reply.body) == {
        "error": "maintenance",
        "retry_after": 7,
        "message": "Switchover",
    }
    assert switch_file.exists() == (kind == "file")

    status = manage("status", "--json", env=env)
    assert json.loads(status.stdout)["maintenance"] == "on"
    assert json.loads(status.stdout)["retry_after"] == 7

    turned_off = manage("off", env=env)

    assert turned_off.returncode == 0, turned_off.stderr
    assert wait_for_status(page, 200).status == 200
    assert json.loads(manage("status", "--json", env=env).stdout)["maintenance"] == "off"


def test_the_default_file_is_the_same_for_every_process_of_a_site(
    settings: SettingsWrapper,
) -> None:
    # Another settings module of the same project (BASE_DIR): the same switch.
    settings.PG_RESILIENCE = {}
    other = manage("status", "--json")

    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["switch"] == f"file {maintenance.maintenance_file()}"
    assert maintenance.maintenance_file() == str(
        Path(settings.BASE_DIR) / ".pg-resilience-maintenance"
    )


def test_off_when_not_on_says_so(switch_file: Path) -> None:
    result = manage("off", env={"MAINTENANCE_TEST_FILE": str(switch_file)})

    assert result.returncode == 0
    assert "was not on" in result.stdout


def test_a_switch_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    result = manage("on", env={"MAINTENANCE_TEST_FILE": str(tmp_path / "missing" / "switch")})

    assert result.returncode == 1
    assert "MAINTENANCE_FILE" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["0", "soon", "-3"])
def test_retry_after_must_be_whole_positive_seconds(value: str, switch_file: Path) -> None:
    result = manage("on", "--retry-after", value, env={"MAINTENANCE_TEST_FILE": str(switch_file)})

    assert result.returncode == 2
    assert "--retry-after" in result.stderr
    assert not switch_file.exists()


def test_an_unreachable_cache_is_a_clear_error_without_its_password() -> None:
    result = manage("on", env={"MAINTENANCE_TEST_CACHE": "unreachable"})

    assert result.returncode == 1
    assert "MAINTENANCE_CACHE" in result.stderr
    assert "cache-password-never-shown" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
