"""Under ASGI the switch is read in a thread, never on the event loop, and once per interval."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.http import HttpResponseBase
from django.test import AsyncClient
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import maintenance
from tests.maintenance.caches import SWITCH_READ_THREADS


async def requests_on_the_loop(path: str, count: int) -> tuple[int, list[HttpResponseBase]]:
    """The loop's thread, and ``count`` requests answered by the ASGI handler on that loop."""
    client = AsyncClient()
    return threading.get_ident(), [await client.get(path) for _ in range(count)]


def test_the_cache_read_runs_off_the_event_loop_once_per_interval(
    settings: SettingsWrapper, tmp_path: Path
) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "switch": {
            "BACKEND": "tests.maintenance.caches.ThreadNotingCache",
            "LOCATION": str(tmp_path / "cache"),
        },
    }
    settings.PG_RESILIENCE = {
        **settings.PG_RESILIENCE,
        "MAINTENANCE_CACHE": "switch",
        "MAINTENANCE_CHECK_INTERVAL": 3600,
    }
    maintenance.turn_on(retry_after=42)
    SWITCH_READ_THREADS.clear()

    loop_thread, responses = async_to_sync(requests_on_the_loop)("/api/items/", 3)

    assert [response.status_code for response in responses] == [503, 503, 503]
    assert len(SWITCH_READ_THREADS) == 1
    assert loop_thread not in SWITCH_READ_THREADS


def test_the_file_is_read_off_the_event_loop_too(
    settings: SettingsWrapper, switch_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_threads: list[int] = []
    original = maintenance.FileSwitch.read

    def noting_read(self: maintenance.FileSwitch) -> maintenance.MaintenanceState | None:
        read_threads.append(threading.get_ident())
        return original(self)

    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, "MAINTENANCE_CHECK_INTERVAL": 3600}
    maintenance.turn_on(retry_after=42)
    monkeypatch.setattr(maintenance.FileSwitch, "read", noting_read)

    loop_thread, responses = async_to_sync(requests_on_the_loop)("/api/items/", 3)

    assert [response.status_code for response in responses] == [503, 503, 503]
    assert len(read_threads) == 1
    assert loop_thread not in read_threads
