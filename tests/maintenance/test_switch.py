"""Reading the switch file fails closed: never silently off, never a hung worker.

Run as root here, so a permission error cannot be made with ``chmod``: the
failures below (a path through a file, a symlink loop, an I/O error) are the
same ``OSError`` branch a permission error takes.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import maintenance
from django_pg_resilience.maintenance import MaintenanceState
from tests.maintenance.conftest import manage

SWITCH_LOGGER = "django_pg_resilience.maintenance"


def set_option(settings: SettingsWrapper, **options: Any) -> None:
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, **options}


def switch_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.ERROR and "maintenance switch" in record.getMessage()
    ]


def make_unreadable(directory: Path, how: str) -> None:
    """Make every path under ``directory`` fail to stat with an error other than "no such file"."""
    directory.rename(directory.with_name(directory.name + "-moved"))
    if how == "not-a-directory":
        directory.write_text("")  # ENOTDIR
    else:
        directory.symlink_to(directory)  # ELOOP


@pytest.fixture
def switch_in_a_directory(tmp_path: Path, settings: SettingsWrapper) -> Path:
    directory = tmp_path / "run"
    directory.mkdir()
    switch_file = directory / "maintenance"
    set_option(settings, MAINTENANCE_FILE=str(switch_file))
    return switch_file


@pytest.mark.parametrize("how", ["not-a-directory", "symlink-loop"])
def test_a_switch_that_becomes_unreadable_keeps_maintenance_on(
    switch_in_a_directory: Path, client: Client, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    maintenance.turn_on(retry_after=42, message="Upgrading")
    assert client.get("/plain/").status_code == 503

    make_unreadable(switch_in_a_directory.parent, how)
    with caplog.at_level(logging.ERROR, logger=SWITCH_LOGGER):
        responses = [client.get("/plain/") for _ in range(3)]

    assert [response.status_code for response in responses] == [503, 503, 503]
    assert responses[-1]["Retry-After"] == "42"
    (error,) = switch_errors(caplog)
    assert "stays on" in error


def test_a_switch_that_becomes_unreadable_keeps_maintenance_off(
    switch_in_a_directory: Path, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    assert client.get("/plain/").status_code == 200

    make_unreadable(switch_in_a_directory.parent, "not-a-directory")
    with caplog.at_level(logging.ERROR, logger=SWITCH_LOGGER):
        statuses = [client.get("/plain/").status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    (error,) = switch_errors(caplog)
    assert "stays off" in error


def test_an_unreadable_switch_can_be_set_to_mean_on(
    tmp_path: Path, client: Client, settings: SettingsWrapper
) -> None:
    not_a_directory = tmp_path / "not-a-directory"
    not_a_directory.write_text("")
    set_option(
        settings,
        MAINTENANCE_FILE=str(not_a_directory / "switch"),
        MAINTENANCE_ON_WHEN_UNREADABLE=True,
        MAINTENANCE_RETRY_AFTER=11,
    )

    response = client.get("/plain/")

    assert response.status_code == 503
    assert response["Retry-After"] == "11"


def test_one_error_per_episode_and_a_line_when_it_is_readable_again(
    switch_in_a_directory: Path, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    directory = switch_in_a_directory.parent
    moved = directory.with_name(directory.name + "-moved")
    with caplog.at_level(logging.INFO, logger=SWITCH_LOGGER):
        for _ in range(2):
            make_unreadable(directory, "not-a-directory")
            for _ in range(3):
                client.get("/plain/")
            directory.unlink()
            moved.rename(directory)
            client.get("/plain/")

    assert len(switch_errors(caplog)) == 2
    recovered = [record for record in caplog.records if "readable again" in record.getMessage()]
    assert len(recovered) == 2


def test_an_io_error_reading_a_present_file_is_on() -> None:
    # /proc/self/mem is a regular file whose first bytes cannot be read (EIO).
    if not os.access("/proc/self/mem", os.R_OK):
        pytest.skip("needs Linux /proc and the right to open /proc/self/mem")
    state = maintenance.FileSwitch("/proc/self/mem")

    with pytest.raises(maintenance.SwitchUnreadable) as raised:
        state.read()

    assert raised.value.present is True


def test_a_fifo_at_the_switch_path_neither_hangs_nor_turns_maintenance_on(
    switch_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    os.mkfifo(switch_file)
    answers: list[MaintenanceState | None] = []
    reader = threading.Thread(target=lambda: answers.append(maintenance.current_state()))

    with caplog.at_level(logging.ERROR, logger=SWITCH_LOGGER):
        reader.start()
        reader.join(timeout=10)
    if reader.is_alive():
        # Unblock a reader stuck in open(): a writer appears, then closes.
        os.close(os.open(switch_file, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
        pytest.fail("reading a FIFO at the switch path blocked the worker")

    assert answers == [None]
    (error,) = switch_errors(caplog)
    assert "not a regular file" in error


def test_a_directory_at_the_switch_path_does_not_turn_maintenance_on(
    switch_file: Path, client: Client
) -> None:
    switch_file.mkdir()

    assert client.get("/plain/").status_code == 200


def test_a_symlink_at_the_switch_path_is_not_followed(
    switch_file: Path, tmp_path: Path, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(MaintenanceState(retry_after=5).to_json())
    switch_file.symlink_to(elsewhere)

    with caplog.at_level(logging.ERROR, logger=SWITCH_LOGGER):
        assert client.get("/plain/").status_code == 200

    (error,) = switch_errors(caplog)
    assert "symbolic link" in error


def test_the_default_switch_file_is_under_base_dir(
    tmp_path: Path, settings: SettingsWrapper
) -> None:
    settings.BASE_DIR = tmp_path
    settings.PG_RESILIENCE = {"MAINTENANCE_CHECK_INTERVAL": 0}

    assert maintenance.maintenance_file() == str(tmp_path / ".pg-resilience-maintenance")

    maintenance.turn_on(retry_after=3)
    assert (tmp_path / ".pg-resilience-maintenance").is_file()
    assert maintenance.current_state() is not None


def test_without_base_dir_or_a_file_nothing_is_in_the_temp_directory(
    settings: SettingsWrapper, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    del settings.BASE_DIR
    settings.PG_RESILIENCE = {"MAINTENANCE_CHECK_INTERVAL": 0}

    with caplog.at_level(logging.ERROR, logger=SWITCH_LOGGER):
        assert client.get("/plain/").status_code == 200

    (error,) = switch_errors(caplog)
    assert "MAINTENANCE_FILE" in error
    result = manage("on", env={"DJANGO_SETTINGS_MODULE": "tests.maintenance.settings_no_base_dir"})
    assert result.returncode == 1
    assert "MAINTENANCE_FILE" in result.stderr
    assert "Traceback" not in result.stderr
