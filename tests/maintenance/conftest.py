"""Fixtures of the maintenance tests: the switch in a file of the test's own directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import stats

MIDDLEWARE_PATH = "django_pg_resilience.middleware.DatabaseUnavailableMiddleware"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def switch_file(tmp_path: Path) -> Path:
    return tmp_path / "maintenance"


@pytest.fixture(autouse=True)
def maintenance_settings(settings: SettingsWrapper, switch_file: Path) -> SettingsWrapper:
    settings.ROOT_URLCONF = "tests.maintenance.urls"
    settings.MIDDLEWARE = [MIDDLEWARE_PATH, *settings.MIDDLEWARE]
    # 0: every request reads the switch, so a test sees its own change at once.
    settings.PG_RESILIENCE = {
        "MAINTENANCE_FILE": str(switch_file),
        "MAINTENANCE_CHECK_INTERVAL": 0,
    }
    stats.reset()
    return settings


def manage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``manage.py maintenance ...`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "django", "maintenance", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.maintenance.settings_subprocess",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
