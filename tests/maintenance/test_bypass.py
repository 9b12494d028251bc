"""Who passes maintenance fails closed: a bad path entry passes nobody, staff only read."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import maintenance
from django_pg_resilience.maintenance import MaintenanceState


def set_option(settings: SettingsWrapper, **options: Any) -> None:
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, **options}


@pytest.fixture
def on() -> MaintenanceState:
    return maintenance.turn_on(retry_after=42)


@pytest.mark.parametrize(
    "options",
    [
        {"MAINTENANCE_BYPASS_PATHS": [""]},
        {"MAINTENANCE_BYPASS_PATHS": ["/healthz", "/"]},
        {"MAINTENANCE_BYPASS_PATHS": ["//"]},
        {"HEALTH_METRICS_PATH": ""},
        {"HEALTH_METRICS_PATH": None},
    ],
    ids=["empty", "root", "slashes", "empty-metrics-path", "no-metrics-path"],
)
def test_an_empty_bypass_entry_passes_nobody(
    on: MaintenanceState, client: Client, settings: SettingsWrapper, options: dict[str, Any]
) -> None:
    set_option(settings, **options)

    assert client.get("/plain/").status_code == 503


@pytest.mark.django_db
def test_the_other_bypass_entries_still_pass(
    on: MaintenanceState, client: Client, settings: SettingsWrapper
) -> None:
    set_option(settings, MAINTENANCE_BYPASS_PATHS=["", "/status"], HEALTH_METRICS_PATH=None)

    assert client.get("/status/ping").status_code == 200
    assert client.get("/plain/").status_code == 503


@pytest.mark.parametrize("path", ["/healthz-anything/", "/readyzz", "/metrics-private"])
def test_default_bypass_prefixes_match_whole_segments(
    on: MaintenanceState, client: Client, path: str
) -> None:
    assert client.get(path).status_code == 503


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("ops", is_staff=True)


@pytest.fixture
def staff_client(staff: Any, settings: SettingsWrapper) -> Client:
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    client = Client()
    client.force_login(staff)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "head", "options"])
def test_staff_read_the_site_during_maintenance(staff_client: Client, method: str) -> None:
    maintenance.turn_on(retry_after=42)

    assert getattr(staff_client, method)("/shop/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_staff_cannot_write_during_maintenance(staff_client: Client, method: str) -> None:
    maintenance.turn_on(retry_after=42)

    response = getattr(staff_client, method)("/buy/", {"name": "socks"})

    assert response.status_code == 503
    assert response["Retry-After"] == "42"


@pytest.mark.django_db
def test_staff_write_where_the_setting_allows_it(
    staff_client: Client, settings: SettingsWrapper
) -> None:
    set_option(settings, MAINTENANCE_STAFF_WRITE_PATHS=["/buy"])
    maintenance.turn_on(retry_after=42)

    assert staff_client.post("/buy/", {"name": "socks"}).status_code == 201
    assert staff_client.post("/buy-more/", {"name": "socks"}).status_code == 503
