"""``manage.py health`` reads a real PgBouncer's admin console: waiting clients, slow settings."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.management import CommandError

from django_pg_resilience.health.pgbouncer import RECOMMENDED
from django_pg_resilience.testing import LocalCluster, free_port
from django_pg_resilience.testing.pgbouncer import PgBouncer, find_pgbouncer
from tests.health.conftest import run_health, run_health_json
from tests.health.test_metrics import scrape, value
from tests.live_server import live_server

try:
    find_pgbouncer()
except RuntimeError as exc:  # pragma: no cover - the bootstrap installs it
    pytest.skip(f"pgbouncer is not installed: {exc}", allow_module_level=True)


@pytest.fixture(autouse=True)
def only_pgbouncer(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default alias is left out of the probes: the report is PgBouncer's alone."""
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.postgresql")


def checks_named(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [check for check in report["checks"] if check["name"] == name]


def test_pgbouncer_defaults_are_flagged_as_stretching_a_failover(
    pg_cluster: LocalCluster,
) -> None:
    with PgBouncer(pg_cluster.primary) as bouncer:
        code, report = run_health_json("--pgbouncer", bouncer.admin_dsn)
        _, table = run_health("--pgbouncer", bouncer.admin_dsn)
    assert code == 1, report["summary"]
    [facts] = report["pgbouncers"]
    assert facts["name"] == f"127.0.0.1:{bouncer.port}" and facts["error"] is None
    assert facts["config"]["server_login_retry"] == "15"
    assert facts["config"]["pool_mode"] == "transaction"
    [settings_check] = checks_named(report, "pgbouncer_settings")
    assert settings_check["status"] == "WARNING"
    assert set(settings_check["value"]) == {
        "server_login_retry",
        "server_connect_timeout",
        "query_wait_timeout",
    }
    assert "server_login_retry = 1" in settings_check["hint"]
    [waiting] = checks_named(report, "pgbouncer_waiting")
    assert waiting["status"] == "OK" and waiting["value"] == 0
    assert f"PgBouncer 127.0.0.1:{bouncer.port}: 0 waiting" in table
    assert "server_login_retry 15" in table


def test_recommended_settings_pass(pg_cluster: LocalCluster, settings: Any) -> None:
    with PgBouncer(pg_cluster.primary, **RECOMMENDED) as bouncer:
        settings.PG_RESILIENCE = {"PGBOUNCERS": {"sidecar": bouncer.admin_dsn}}
        code, report = run_health_json()
    assert code == 0, report["summary"]
    assert [c["status"] for c in checks_named(report, "pgbouncer_settings")] == ["OK"]
    assert report["pgbouncers"][0]["name"] == "sidecar"


@pytest.fixture
def starved_bouncer(pg_cluster: LocalCluster) -> Iterator[PgBouncer]:
    """A one-connection pool whose connection a client holds in an open transaction,
    while another client waits for it."""
    with PgBouncer(pg_cluster.primary, default_pool_size=1, **RECOMMENDED) as bouncer:
        dsn = f"host={bouncer.host} port={bouncer.port} dbname=postgres user=postgres"
        holder = psycopg.connect(dsn, prepare_threshold=None)
        holder.execute("SELECT 1")  # a transaction opens and keeps the only server
        waited: list[Any] = []

        def wait_for_a_server() -> None:
            with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as waiter:
                waited.append(waiter.execute("SELECT 2").fetchone())

        waiter = threading.Thread(target=wait_for_a_server, daemon=True)
        waiter.start()
        try:
            yield bouncer
        finally:
            holder.rollback()
            holder.close()
            waiter.join(10)
        assert waited == [(2,)]


def test_waiting_clients_are_reported_in_every_format(
    starved_bouncer: PgBouncer, settings: Any
) -> None:
    settings.PG_RESILIENCE = {
        "PGBOUNCERS": {"sidecar": starved_bouncer.admin_dsn},
        "HEALTH_PGBOUNCER_WAIT_WARNING": 0.5,
        "HEALTH_PGBOUNCER_WAIT_CRITICAL": 60.0,
    }
    deadline = time.monotonic() + 15
    while True:
        code, report = run_health_json()
        [waiting] = checks_named(report, "pgbouncer_waiting")
        if waiting["status"] != "OK" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert waiting["status"] == "WARNING", waiting
    assert code == 1
    assert waiting["value"] == 1 and report["pgbouncers"][0]["clients_waiting"] == 1
    assert "1 client waiting" in waiting["message"]
    _, prometheus = run_health("--format", "prometheus")
    _, nagios = run_health("--format", "nagios")
    assert 'pg_resilience_pgbouncer_clients_waiting{pgbouncer="sidecar"} 1' in prometheus
    setting = 'pgbouncer_setting_seconds{pgbouncer="sidecar",setting="server_login_retry"} 1'
    assert f"pg_resilience_{setting}" in prometheus
    assert "'pgbouncer_sidecar_waiting'=1;;;0;" in nagios


def test_an_unreachable_pgbouncer_is_critical_and_its_password_stays_hidden(
    settings: Any,
) -> None:
    dsn = f"host=127.0.0.1 port={free_port()} user=stats password=bouncer-secret-42"
    settings.PG_RESILIENCE = {"PGBOUNCERS": {"gone": dsn}, "HEALTH_TIMEOUT": 2.0}
    code, report = run_health_json()
    assert code == 2
    [check] = checks_named(report, "pgbouncer_reachable")
    assert check["status"] == "CRITICAL" and "admin console unreachable" in check["message"]
    assert report["pgbouncers"][0]["dsn"].count("********") == 1
    outputs = [json.dumps(report), *(run_health("--format", f)[1] for f in ("table", "nagios"))]
    assert all("bouncer-secret-42" not in text for text in outputs)
    assert (
        'pg_resilience_pgbouncer_up{pgbouncer="gone"} 0' in run_health("--format", "prometheus")[1]
    )


def test_a_malformed_dsn_says_how_to_fix_it(settings: Any) -> None:
    settings.PG_RESILIENCE = {"PGBOUNCERS": {"bad": "host=x port"}}
    with pytest.raises(CommandError, match=r"PGBOUNCERS'\]\['bad'\] is not a valid libpq"):
        run_health()


def test_the_pgbouncer_gauges_are_on_the_apps_metrics(
    pg_cluster: LocalCluster, settings: Any
) -> None:
    settings.ROOT_URLCONF = "tests.health.metrics_urls"
    with PgBouncer(pg_cluster.primary) as bouncer:
        settings.PG_RESILIENCE = {
            "PGBOUNCERS": {"sidecar": bouncer.admin_dsn},
            "HEALTH_METRICS_NAMES": "always",  # /metrics is the operator's alone here
        }
        with live_server() as url:
            scraped = scrape(url)
    assert value(scraped, "pg_resilience_pgbouncer_up", pgbouncer="sidecar") == 1
    assert value(scraped, "pg_resilience_pgbouncer_clients_waiting", pgbouncer="sidecar") == 0
    setting = {"pgbouncer": "sidecar", "setting": "server_login_retry"}
    assert value(scraped, "pg_resilience_pgbouncer_setting_seconds", **setting) == 15


def test_a_malformed_pgbouncer_option_exits_unknown() -> None:
    with pytest.raises(CommandError, match="--pgbouncer number 1 is not a libpq") as raised:
        run_health("--pgbouncer", "host=x port")
    assert raised.value.returncode == 3
