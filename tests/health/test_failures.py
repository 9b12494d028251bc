"""Broken clusters: a stopped standby, paused replay, a killed primary, a blackholed endpoint."""

from __future__ import annotations

import threading
import time
from typing import Any

from django_pg_resilience.testing import EndpointProxy, LocalCluster
from django_pg_resilience.testing.django import database_alias
from tests.health.conftest import check, node_entry, node_named, run_health_json


def poll_health(*args: str, until: int, timeout: float = 20.0) -> tuple[int, dict[str, Any]]:
    """Run the command until it exits with ``until`` (or the deadline passes)."""
    deadline = time.monotonic() + timeout
    while True:
        code, report = run_health_json(*args)
        if code == until or time.monotonic() > deadline:
            return code, report


def test_stopped_standby_is_a_warning(pg_fresh_cluster: LocalCluster) -> None:
    cluster = pg_fresh_cluster
    cluster.stop(cluster.standbys[0], "fast")
    with database_alias("ha", cluster.primary):
        code, report = poll_health("--database", "ha", until=1)

    assert code == 1, report["summary"]
    assert report["status"] == "WARNING"
    streaming = check(node_named(report, "ha"), "standbys_streaming")
    assert streaming["status"] == "WARNING" and streaming["value"] == 0
    assert "no standby is streaming" in report["summary"]

    # A single-node database says so, and is then OK.
    with database_alias("single", cluster.primary):
        code, report = run_health_json("--database", "single", "--no-standby-required")
    assert code == 0, report["summary"]


def test_paused_replay_lag_grows_to_critical(
    pg_fresh_cluster: LocalCluster, set_nodes: Any
) -> None:
    cluster = pg_fresh_cluster
    primary, standby = cluster.primary, cluster.standbys[0]
    primary.query("CREATE TABLE health_writes (at timestamptz DEFAULT now())")
    cluster.wait_for_replay(standby)
    standby.query("SELECT pg_wal_replay_pause()")
    set_nodes({"replica": node_entry(standby, ROLE="standby")})
    thresholds = ("--lag-warning", "0.2", "--lag-critical", "0.5")

    deadline = time.monotonic() + 30
    with database_alias("ha", primary):
        while True:
            primary.query("INSERT INTO health_writes DEFAULT VALUES")
            code, report = run_health_json("--database", "ha", *thresholds)
            lag = check(node_named(report, "ha"), "replication_lag")
            if lag["status"] == "CRITICAL" or time.monotonic() > deadline:
                break

    assert code == 2, report["summary"]
    assert report["status"] == "CRITICAL"
    assert lag["status"] == "CRITICAL", lag
    assert lag["value"] >= 0.5 and lag["critical"] == 0.5
    replica = node_named(report, "replica")
    assert replica["recovery"]["replay_paused"] is True
    assert check(replica, "replay_paused")["status"] == "WARNING"
    assert replica["recovery"]["replay_lag_bytes"] > 0


def test_killed_primary_is_critical_within_the_timeout(pg_fresh_cluster: LocalCluster) -> None:
    cluster = pg_fresh_cluster
    cluster.kill(cluster.primary)
    with database_alias("app", cluster.endpoint):
        started = time.monotonic()
        code, report = run_health_json("--database", "app", "--timeout", "2")
        elapsed = time.monotonic() - started

    assert code == 2
    assert report["status"] == "CRITICAL"
    node = node_named(report, "app")
    assert node["reachable"] is False and node["error"]
    assert check(node, "reachable")["status"] == "CRITICAL"
    assert elapsed < 8  # stock psycopg would wait up to 130 s


def test_blackholed_node_is_unreachable_within_its_timeout(pg_endpoint: EndpointProxy) -> None:
    pg_endpoint.blackhole()
    with database_alias("app", pg_endpoint):
        started = time.monotonic()
        code, report = run_health_json("--database", "app", "--timeout", "2")
        elapsed = time.monotonic() - started

    assert code == 2
    node = node_named(report, "app")
    assert node["reachable"] is False
    assert "time" in node["error"].lower()  # "timeout expired" or "timed out"
    assert elapsed < 6


def test_probe_deadline_beats_the_libpq_minimum(pg_endpoint: EndpointProxy) -> None:
    """libpq waits at least 2 s to connect; the thread deadline stops waiting earlier."""
    pg_endpoint.blackhole()
    with database_alias("app", pg_endpoint):
        code, report = run_health_json("--database", "app", "--timeout", "0.3")

    assert code == 2
    # The probe's own deadline ended it, not libpq's connect_timeout ("timeout expired").
    assert node_named(report, "app")["error"] == "no answer within 0.3 s (timed out)"


def test_alias_reaching_a_standby_is_critical(pg_cluster: LocalCluster) -> None:
    """After a failover the old address may lead to a standby: writes would fail."""
    with database_alias("writer", pg_cluster.standbys[0]):
        code, report = run_health_json("--database", "writer")

    assert code == 2
    role = check(node_named(report, "writer"), "role")
    assert role["status"] == "CRITICAL" and role["value"] == "standby"


def test_multi_host_alias_finds_its_primary(pg_cluster: LocalCluster) -> None:
    standby, primary = pg_cluster.standbys[0], pg_cluster.primary
    address = type("Address", (), {"host": f"{standby.host},{primary.host}", "port": 0})()
    with database_alias("multi", address, PORT=f"{standby.port},{primary.port}"):
        code, report = run_health_json("--database", "multi")

    assert code == 0, report["summary"]
    assert [n["name"] for n in report["nodes"]] == [
        f"multi@{standby.host}:{standby.port}",
        f"multi@{primary.host}:{primary.port}",
    ]
    group = report["checks"][0]
    assert group["name"] == "primary" and group["status"] == "OK"
    assert group["value"] == f"multi@{primary.host}:{primary.port}"


def test_probe_stuck_after_connecting_is_cut_loose_at_the_deadline(
    pg_endpoint: EndpointProxy,
) -> None:
    """Connected, then silent: only the deadline notices, and the thread must not linger."""
    pg_endpoint.delay(150)  # connecting fits in 1 s; the statements after it do not
    with database_alias("slow", pg_endpoint):
        started = time.monotonic()
        code, report = run_health_json("--database", "slow", "--timeout", "1")
        elapsed = time.monotonic() - started
    pg_endpoint.blackhole()  # what is still open now hangs for good unless it was cut

    assert code == 2
    error = node_named(report, "slow")["error"]
    assert error == "no answer within 1 s (timed out)", error
    assert elapsed < 3
    deadline = time.monotonic() + 10
    while any(t.name == "health-probe-slow" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the probe thread is still running"
        time.sleep(0.05)
