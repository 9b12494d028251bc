"""/readyz answers for this process; the database is reported, enforced only on request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from django_pg_resilience.health import readiness
from tests.health.test_views import TOKEN, healthy  # noqa: F401 (a fixture)

pytestmark = pytest.mark.urls("tests.health.urls")
UNREACHABLE_PRIMARY = {"old_primary": {"HOST": "127.0.0.1", "PORT": "1", "ROLE": "primary"}}


@pytest.fixture
def shutdown_flag() -> Iterator[None]:
    yield
    readiness._shutting_down.clear()


def ready(**headers: str) -> tuple[int, dict[str, Any]]:
    response = Client().get("/readyz", headers=headers)
    return response.status_code, response.json()


@pytest.mark.usefixtures("healthy")
def test_an_outage_is_reported_not_enforced(settings: Any) -> None:
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, "NODES": UNREACHABLE_PRIMARY}
    code, body = ready(**{"X-Health-Token": TOKEN})
    assert code == 200 and body["ready"] is True
    assert body["database"] == "CRITICAL"
    assert body["cluster"]["status"] == "CRITICAL"


@pytest.mark.usefixtures("healthy")
@pytest.mark.parametrize("enforce", [("reachable",), ("cluster",), ("role", "reachable")])
def test_an_enforced_check_makes_the_process_unready(settings: Any, enforce: tuple[str]) -> None:
    settings.PG_RESILIENCE = {
        **settings.PG_RESILIENCE,
        "NODES": UNREACHABLE_PRIMARY,
        "READINESS_ENFORCE": list(enforce),
    }
    code, body = ready()
    assert code == 503 and body["ready"] is False and body["status"] == "CRITICAL"
    code, body = ready(**{"X-Health-Token": TOKEN})
    assert body["enforced"] == sorted(enforce)
    failing = {c["name"] for c in body["checks"] if c["status"] != "OK"}
    assert "enforced:reachable" in failing or "enforced:cluster" in failing


@pytest.mark.usefixtures("healthy")
def test_an_enforced_check_that_passes_keeps_the_process_ready(settings: Any) -> None:
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, "READINESS_ENFORCE": ["reachable"]}
    code, body = ready()
    assert code == 200 and body["ready"] is True and body["database"] == "OK"


@pytest.mark.usefixtures("healthy")
def test_draining_by_file_and_by_shutdown(
    settings: Any, tmp_path: Path, shutdown_flag: None
) -> None:
    drain = tmp_path / "draining"
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, "READINESS_DRAIN_FILE": str(drain)}
    assert ready()[0] == 200
    drain.touch()
    code, body = ready(**{"X-Health-Token": TOKEN})
    assert code == 503
    assert [c["name"] for c in body["checks"] if c["status"] == "CRITICAL"] == ["shutting_down"]
    drain.unlink()
    assert ready()[0] == 200
    readiness.begin_shutdown()
    assert ready()[0] == 503


def test_broken_settings_make_the_process_unready(settings: Any) -> None:
    settings.PG_RESILIENCE = {"NO_SUCH_SETTING": 1}
    code, body = ready()
    assert code == 503 and body["ready"] is False


def test_every_enforceable_name_is_a_check_the_health_command_makes() -> None:
    """Each name READINESS_ENFORCE accepts names a check the health evaluation really
    makes (a name no check carries would be enforced as always OK): facts that trigger
    every check, through the same functions ``manage.py health`` calls."""
    from django_pg_resilience.health.digitalocean import check_cluster
    from django_pg_resilience.health.evaluate import Thresholds, evaluate_groups, evaluate_node
    from django_pg_resilience.health.probe import NodeFacts
    from django_pg_resilience.health.targets import Target

    thresholds = Thresholds.from_settings()
    primary = Target("db", "db", "alias", "primary", 1, {"host": "a", "port": 5432})
    primary_facts = NodeFacts(
        reachable=True,
        role="primary",
        connections_used=1,
        connections_max=100,
        oldest_transaction_seconds=0.0,
        standbys=[{"state": "streaming", "application_name": "s", "replay_lag_seconds": 0.0}],
        slots=[{"slot_name": "gone", "active": False, "wal_status": "lost"}],
        query_errors=["replication: permission denied"],
    )
    standby = Target("replica", "replica", "node", "standby", 1, {"host": "b", "port": 5432})
    standby_facts = NodeFacts(
        reachable=True,
        role="standby",
        replay_delay_seconds=0.0,
        replay_paused=True,
        wal_receiver_status="streaming",
    )
    hosts = [
        Target(f"multi ({host})", "multi", "alias", "primary", 2, {"host": host, "port": 5432})
        for host in ("c", "d")
    ]
    hosts_facts = [NodeFacts(reachable=True, role="primary"), NodeFacts(reachable=True)]
    checks = [
        *evaluate_node(primary, primary_facts, thresholds, {"breaker_open": {"db": 1.0}}),
        *evaluate_node(standby, standby_facts, thresholds),
        *evaluate_groups(hosts, hosts_facts),
        *check_cluster(None, base_url="https://api.digitalocean.com", timeout=1)[1],
    ]
    made = {check.name for check in checks}
    assert readiness.ENFORCEABLE_CHECKS - {readiness.CLUSTER} <= made, sorted(
        readiness.ENFORCEABLE_CHECKS - {readiness.CLUSTER} - made
    )
