"""The middleware during maintenance: the calm 503, its kinds, who passes, the counter and signal.

Tests without a django_db mark prove the 503 costs no query: pytest-django
makes any database access fail there.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import maintenance, signals, stats
from django_pg_resilience.maintenance import MaintenanceState
from tests.middleware.conftest import assert_unavailable_headers
from tests.middleware.views import REAL_CONTENT

MESSAGE = "Back at 14:00 UTC after the database upgrade."


def set_option(settings: SettingsWrapper, **options: Any) -> None:
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, **options}


@pytest.fixture
def on() -> MaintenanceState:
    return maintenance.turn_on(retry_after=42, message=MESSAGE)


def test_page_during_maintenance_is_the_calm_503_with_its_retry_after(
    on: MaintenanceState, client: Client
) -> None:
    response = client.get("/shop/", HTTP_ACCEPT="text/html")

    assert_unavailable_headers(response, retry_after=42)
    body = response.content.decode()
    assert "be right back" in body
    assert MESSAGE in body
    assert 'data-retry-after="42"' in body


def test_unsafe_request_is_told_its_action_was_not_done(
    on: MaintenanceState, client: Client
) -> None:
    response = client.post("/buy/", {"name": "socks"})

    assert_unavailable_headers(response, retry_after=42)
    assert "Your action was not completed" in response.content.decode()


@pytest.mark.parametrize(
    ("path", "accept"), [("/api/items/", "*/*"), ("/shop/", "application/json")]
)
def test_api_clients_get_json_with_the_maintenance_code(
    on: MaintenanceState, client: Client, path: str, accept: str
) -> None:
    response = client.get(path, HTTP_ACCEPT=accept)

    assert_unavailable_headers(response, retry_after=42)
    assert response.json() == {"error": "maintenance", "retry_after": 42, "message": MESSAGE}


def test_webhooks_get_the_bare_503_so_senders_retry(on: MaintenanceState, client: Client) -> None:
    response = client.post("/hooks/orders/", b"{}", content_type="application/json")

    assert_unavailable_headers(response, retry_after=42)
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "maintenance"


@pytest.mark.django_db
def test_webhooks_pass_when_the_setting_says_so(
    on: MaintenanceState, client: Client, settings: SettingsWrapper
) -> None:
    set_option(settings, MAINTENANCE_BYPASS_WEBHOOKS=True)

    response = client.post("/hooks/orders/", b"{}", content_type="application/json")

    assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/readyz/", "/status/ping"])
def test_health_views_and_configured_paths_pass(
    on: MaintenanceState, client: Client, settings: SettingsWrapper, path: str
) -> None:
    # /readyz/ passes by its view's flag, wherever it is mounted; /status passes by setting.
    set_option(settings, MAINTENANCE_BYPASS_PATHS=["/status/"])

    assert client.get(path).status_code == 200


def test_a_bypass_path_matches_whole_segments_only(
    on: MaintenanceState, client: Client, settings: SettingsWrapper
) -> None:
    set_option(settings, MAINTENANCE_BYPASS_PATHS=["/sho"])

    assert client.get("/shop/").status_code == 503


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("remote_addr", "networks", "passes"),
    [
        ("203.0.113.7", ["203.0.113.7"], True),
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("10.1.2.3", ["192.168.0.0/16", "2001:db8::/32"], False),
        ("2001:db8::5", ["2001:db8::/32"], True),
        ("::ffff:10.0.0.9", ["10.0.0.0/8"], True),
        ("not-an-address", ["0.0.0.0/0"], False),
    ],
)
def test_configured_addresses_and_networks_pass(
    on: MaintenanceState,
    settings: SettingsWrapper,
    remote_addr: str,
    networks: list[str],
    passes: bool,
) -> None:
    set_option(settings, MAINTENANCE_BYPASS_IPS=networks)

    response = Client(REMOTE_ADDR=remote_addr).get("/shop/")

    assert response.status_code == (200 if passes else 503)


def test_x_forwarded_for_is_never_trusted(on: MaintenanceState, settings: SettingsWrapper) -> None:
    set_option(settings, MAINTENANCE_BYPASS_IPS=["203.0.113.7"])

    response = Client(REMOTE_ADDR="198.51.100.1").get("/shop/", HTTP_X_FORWARDED_FOR="203.0.113.7")

    assert response.status_code == 503


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("ops", is_staff=True)


@pytest.fixture
def customer(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("customer")


@pytest.mark.django_db
def test_staff_with_a_database_session_gets_no_bypass_and_no_query(
    staff: Any, client: Client, django_assert_num_queries: Any
) -> None:
    client.force_login(staff)
    maintenance.turn_on(retry_after=42)

    # Knowing is_staff would take the session and user tables: no bypass rather than a query.
    with django_assert_num_queries(0):
        response = client.get("/shop/")

    assert response.status_code == 503


@pytest.mark.django_db
def test_staff_passes_with_signed_cookie_sessions_without_a_query_for_the_decision(
    staff: Any, customer: Any, settings: SettingsWrapper, django_assert_num_queries: Any
) -> None:
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    staff_client, customer_client = Client(), Client()
    staff_client.force_login(staff)
    customer_client.force_login(customer)
    maintenance.turn_on(retry_after=42)

    with django_assert_num_queries(0):
        refused = customer_client.get("/shop/")
    passed = staff_client.get("/shop/")

    assert refused.status_code == 503
    assert passed.status_code == 200
    assert REAL_CONTENT in passed.content.decode()


@pytest.mark.django_db
def test_staff_passes_when_a_middleware_already_loaded_the_user(
    staff: Any, customer: Any, settings: SettingsWrapper
) -> None:
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.maintenance.middleware.LoadUserMiddleware"]
    staff_client, customer_client = Client(), Client()
    staff_client.force_login(staff)
    customer_client.force_login(customer)
    maintenance.turn_on(retry_after=42)

    assert staff_client.get("/shop/").status_code == 200
    assert customer_client.get("/shop/").status_code == 503


@pytest.mark.django_db
def test_staff_bypass_can_be_turned_off(staff: Any, settings: SettingsWrapper) -> None:
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    set_option(settings, MAINTENANCE_BYPASS_STAFF=False)
    client = Client()
    client.force_login(staff)
    maintenance.turn_on()

    assert client.get("/shop/").status_code == 503


def test_counter_and_signal_per_maintenance_response(on: MaintenanceState, client: Client) -> None:
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    signals.maintenance_response.connect(receiver)
    try:
        client.get("/shop/")
        client.get("/api/items/")
        client.post("/hooks/orders/", b"{}", content_type="application/json")
    finally:
        signals.maintenance_response.disconnect(receiver)

    assert stats.snapshot()["maintenance_responses"] == {"html": 1, "json": 1, "webhook": 1}
    assert [event["kind"] for event in received] == ["html", "json", "webhook"]
    assert all(event["retry_after"] == 42 for event in received)
    assert received[0]["request"].path == "/shop/"
    assert "unavailable_responses" not in stats.snapshot()


def test_async_requests_get_the_maintenance_503(on: MaintenanceState) -> None:
    response = async_to_sync(AsyncClient().get)("/api/items/")

    assert_unavailable_headers(response, retry_after=42)
    assert response.json()["error"] == "maintenance"
    assert stats.snapshot()["maintenance_responses"] == {"json": 1}


@pytest.mark.django_db
def test_off_serves_the_site_again(on: MaintenanceState, client: Client) -> None:
    assert client.get("/shop/").status_code == 503

    assert maintenance.turn_off() is True
    assert maintenance.turn_off() is False
    assert client.get("/shop/").status_code == 200


def test_a_touched_file_is_on_with_the_default_retry_after(
    switch_file: Path, client: Client, settings: SettingsWrapper
) -> None:
    set_option(settings, MAINTENANCE_RETRY_AFTER=17)
    switch_file.touch()

    response = client.get("/shop/")

    assert_unavailable_headers(response, retry_after=17)


@pytest.mark.parametrize(
    "text",
    ["", "not json", "[]", '{"retry_after": "soon"}', '{"retry_after": true}', "{}"],
)
def test_state_that_is_not_what_the_command_writes_is_on_with_defaults(text: str) -> None:
    state = MaintenanceState.from_json(text)

    assert state == MaintenanceState(retry_after=30)


def test_state_round_trips_through_json() -> None:
    state = MaintenanceState(retry_after=9, message="Zurück um 14 Uhr", since=1_700_000_000.5)

    assert MaintenanceState.from_json(state.to_json()) == state
    assert json.loads(state.to_json())["message"] == "Zurück um 14 Uhr"


def test_the_switch_file_is_replaced_not_followed(switch_file: Path, tmp_path: Path) -> None:
    # A symlink planted at the path (a shared temp directory) must not redirect the write.
    victim = tmp_path / "victim"
    victim.write_text("precious")
    switch_file.symlink_to(victim)

    maintenance.turn_on(retry_after=5)

    assert victim.read_text() == "precious"
    assert not switch_file.is_symlink()
    assert MaintenanceState.from_json(switch_file.read_text()).retry_after == 5


def test_a_process_rereads_the_switch_only_after_the_check_interval(
    switch_file: Path, client: Client, settings: SettingsWrapper
) -> None:
    set_option(settings, MAINTENANCE_CHECK_INTERVAL=3600)
    assert client.get("/plain/").status_code == 200

    switch_file.write_text(MaintenanceState(retry_after=5).to_json())

    # Within the interval the process keeps what it read: no stat per request.
    assert client.get("/plain/").status_code == 200
    assert maintenance.current_state() is None


def test_a_request_no_view_answers_still_gets_the_maintenance_503(
    on: MaintenanceState, client: Client
) -> None:
    # Staff bypass waits for process_view, which a 404 never reaches.
    response = client.get("/no-such-page/")

    assert_unavailable_headers(response, retry_after=42)


def test_an_unreadable_switch_serves_the_site_and_logs_once(
    tmp_path: Path, client: Client, settings: SettingsWrapper, caplog: pytest.LogCaptureFixture
) -> None:
    # A file where a directory should be: os.stat fails (not "no such file"); the site stays up.
    not_a_directory = tmp_path / "not-a-directory"
    not_a_directory.write_text("")
    set_option(settings, MAINTENANCE_FILE=str(not_a_directory / "switch"))

    with caplog.at_level(logging.ERROR, logger="django_pg_resilience.maintenance"):
        statuses = [client.get("/plain/").status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    errors = [record for record in caplog.records if "maintenance switch" in record.message]
    assert len(errors) == 1
