"""/healthz, /readyz and /healthz/cluster through Django's test client, on the session cluster."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from django_pg_resilience.health import views
from django_pg_resilience.testing import LocalCluster
from tests.health.conftest import node_entry

pytestmark = pytest.mark.urls("tests.health.urls")
TOKEN = "a-long-random-health-token-for-tests"


@pytest.fixture
def healthy(pg_cluster: LocalCluster, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default alias on the session primary, the standby as a NODES entry."""
    primary = pg_cluster.primary
    monkeypatch.setitem(settings.DATABASES["default"], "HOST", primary.host)
    monkeypatch.setitem(settings.DATABASES["default"], "PORT", str(primary.port))
    monkeypatch.setitem(settings.DATABASES["default"], "NAME", "postgres")
    settings.PG_RESILIENCE = {
        "HEALTH_TOKEN": TOKEN,
        "NODES": {"replica": node_entry(pg_cluster.standbys[0], ROLE="standby")},
    }


def test_healthz_touches_no_database(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(settings.DATABASES["default"], "PORT", "1")  # nothing there
    response = Client().get(reverse("pg_resilience:healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "OK"}
    assert "no-store" in response["Cache-Control"]


def test_readyz_without_token_shows_only_statuses(healthy: None) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.json()
    assert body["status"] == "OK" and body["ready"] is True
    assert set(body) == {"schema_version", "status", "ready", "database", "checked_at"}

    wrong = Client().get("/readyz", headers={"X-Health-Token": TOKEN[:-1] + "x"})
    assert set(wrong.json()) == set(body)


def test_readyz_with_token_shows_the_process_checks_and_the_cluster(healthy: None) -> None:
    response = Client().get("/readyz", headers={"X-Health-Token": TOKEN})
    assert response.status_code == 200
    body = response.json()
    assert {c["name"] for c in body["checks"]} == {
        "started",
        "settings",
        "migrations",
        "shutting_down",
    }
    assert body["database"] == "OK" and body["enforced"] == []
    assert {n["name"] for n in body["cluster"]["nodes"]} == {"default", "replica"}


def test_cluster_with_token_shows_the_command_schema(healthy: None) -> None:
    response = Client().get(reverse("pg_resilience:cluster"), headers={"X-Health-Token": TOKEN})
    assert response.status_code == 200
    body = response.json()
    assert body["schema_version"] == 1 and body["status"] == "OK"
    assert {n["name"] for n in body["nodes"]} == {"default", "replica"}
    assert {"thresholds", "checks", "summary", "digitalocean", "age_seconds"} <= set(body)


def test_cluster_is_503_when_critical_and_readyz_stays_ready(healthy: None, settings: Any) -> None:
    settings.PG_RESILIENCE = {
        **settings.PG_RESILIENCE,
        "NODES": {"old_primary": {"HOST": "127.0.0.1", "PORT": "1", "ROLE": "primary"}},
    }
    response = Client().get("/healthz/cluster", headers={"X-Health-Token": TOKEN})
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "CRITICAL"
    assert "no-store" in response["Cache-Control"]
    bare = Client().get("/healthz/cluster")
    assert bare.status_code == 503 and set(bare.json()) == {
        "schema_version",
        "status",
        "exit_code",
        "checked_at",
    }
    # The process itself is fine: the balancer keeps sending it requests (it
    # serves the calm 503 page), and the database's state is reported.
    ready = Client().get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and ready.json()["database"] == "CRITICAL"


def test_views_are_marked_for_the_503_middleware() -> None:
    assert views.healthz.pg_resilience_passthrough is True  # type: ignore[attr-defined]
    assert views.readyz.pg_resilience_passthrough is True  # type: ignore[attr-defined]
    assert views.cluster_health.pg_resilience_passthrough is True  # type: ignore[attr-defined]
    assert Client().post("/readyz").status_code == 405
    assert Client().post("/healthz/cluster").status_code == 405
