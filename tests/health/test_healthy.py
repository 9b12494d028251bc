"""`manage.py health` against the healthy session cluster: formats, schema, secrets."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
from tests.health.conftest import check, node_entry, node_named, run_health, run_health_json

NODE_KEYS = {
    "name", "group", "source", "host", "port", "dsn", "expected_role", "status", "reachable",
    "error", "connect_seconds", "server_version", "role", "timeline", "connections",
    "oldest_transaction_seconds", "replication", "recovery", "app", "checks",
}  # fmt: skip
CHECK_KEYS = {
    "name",
    "status",
    "message",
    "value",
    "unit",
    "warning",
    "critical",
    "subject",
    "hint",
}


def test_healthy_primary_and_standby_are_ok(pg_cluster: LocalCluster, set_nodes: Any) -> None:
    standby = pg_cluster.standbys[0]
    set_nodes({"replica": node_entry(standby, ROLE="standby")})
    with database_alias("health_primary", pg_cluster.primary):
        code, report = run_health_json("--database", "health_primary")

    assert code == 0, report["summary"]
    assert report["status"] == "OK"
    primary = node_named(report, "health_primary")
    assert primary["role"] == "primary" and primary["reachable"]
    streamed = primary["replication"]["standbys"]
    assert [s["application_name"] for s in streamed] == [standby.name]
    assert streamed[0]["state"] == "streaming"
    assert check(primary, "standbys_streaming")["value"] == 1
    lag = check(primary, "replication_lag")
    assert lag["status"] == "OK" and lag["value"] < 10
    replica = node_named(report, "replica")
    assert replica["role"] == "standby"
    assert replica["recovery"]["wal_receiver_streaming"] is True
    assert replica["recovery"]["replay_delay_seconds"] < 10


def test_json_schema_is_stable(pg_cluster: LocalCluster, set_nodes: Any) -> None:
    set_nodes({"replica": node_entry(pg_cluster.standbys[0])})
    with database_alias("health_primary", pg_cluster.primary):
        _, report = run_health_json("--database", "health_primary")

    assert report["schema_version"] == 1
    assert set(report) == {
        "schema_version", "status", "exit_code", "checked_at", "summary", "duration_seconds",
        "timeout_seconds", "thresholds", "nodes", "checks", "digitalocean", "pgbouncers",
    }  # fmt: skip
    assert (
        report["exit_code"]
        == {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}[report["status"]]
    )
    assert set(report["thresholds"]) == {
        "lag_warning", "lag_critical", "connections_warning", "connections_critical",
        "oldest_transaction_warning", "require_standby",
        "node_cpu_warning", "node_cpu_critical", "node_memory_warning", "node_memory_critical",
        "node_disk_warning", "node_disk_critical",
        "pgbouncer_wait_warning", "pgbouncer_wait_critical",
    }  # fmt: skip
    for node in report["nodes"]:
        assert set(node) == NODE_KEYS
        assert set(node["connections"]) == {"used", "max", "ratio"}
        for item in node["checks"]:
            assert set(item) == CHECK_KEYS
            assert item["status"] in ("OK", "WARNING", "CRITICAL", "UNKNOWN")
    primary = node_named(report, "health_primary")
    assert set(primary["replication"]) == {
        "synchronous_commit", "synchronous_standby_names", "lossless_failover", "standbys", "slots",
    }  # fmt: skip
    assert set(primary["replication"]["standbys"][0]) == {
        "application_name", "client_addr", "state", "sync_state", "write_lag_seconds",
        "flush_lag_seconds", "replay_lag_seconds", "replay_lag_bytes", "replay_lsn",
    }  # fmt: skip
    assert primary["replication"]["lossless_failover"] is False  # asynchronous cluster
    assert node_named(report, "replica")["recovery"]["sender"]


def test_prometheus_output_parses(pg_cluster: LocalCluster, set_nodes: Any) -> None:
    set_nodes({"replica": node_entry(pg_cluster.standbys[0])})
    with database_alias("health_primary", pg_cluster.primary):
        code, text = run_health("--database", "health_primary", "--format", "prometheus")

    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["pg_resilience_health_status"].samples[0].value == code == 0
    up = {s.labels["node"]: s.value for s in families["pg_resilience_up"].samples}
    assert up == {"health_primary": 1.0, "replica": 1.0}
    primary_flag = {s.labels["node"]: s.value for s in families["pg_resilience_is_primary"].samples}
    assert primary_flag == {"health_primary": 1.0, "replica": 0.0}
    lag = families["pg_resilience_replication_lag_seconds"].samples
    assert lag[0].labels["standby"] == pg_cluster.standbys[0].name
    assert 0 <= lag[0].value < 10
    assert "pg_resilience_replication_lag_bytes" in families
    ratio = families["pg_resilience_connections_used_ratio"].samples[0].value
    assert 0 < ratio < 1


def test_nagios_line_has_status_and_perfdata(pg_cluster: LocalCluster) -> None:
    with database_alias("health_primary", pg_cluster.primary):
        code, text = run_health("--database", "health_primary", "--format", "nagios")

    assert code == 0
    assert text.count("\n") == 1
    head, perfdata = text.strip().split(" | ")
    assert head.startswith("PG_RESILIENCE OK - ")
    items = perfdata.split(" ")
    pattern = re.compile(r"^'[^'=\s]+'=-?[\d.]+(s|%|B)?;[\d.]*;[\d.]*;[\d.]*;[\d.]*$")
    assert all(pattern.match(item) for item in items), items
    assert "'health_primary_connections'=" in perfdata
    assert any(
        item.startswith("'health_primary_node1_lag'=") and ";10;60;" in item for item in items
    )


def test_password_never_appears_in_any_output(
    pg_cluster: LocalCluster, set_nodes: Any, tmp_path: Path
) -> None:
    user, password, wrong = f"health_{uuid.uuid4().hex[:8]}", "pw-Secr3t-good", "pw-Secr3t-bad"
    pg_cluster.create_user(user, password)
    primary = pg_cluster.primary
    set_nodes(
        {
            "as_dict": node_entry(primary, USER=user, PASSWORD=password),
            "as_dsn": f"host={primary.host} port={primary.port} user={user} "
            f"password={password} dbname=postgres",
            "wrong_password": node_entry(primary, USER=user, PASSWORD=wrong),
        }
    )
    outputs = []
    for fmt in ("table", "json", "prometheus", "nagios"):
        outputs.append(run_health("--format", fmt, "--verbosity", "2")[1])
    prom_file = tmp_path / "health.prom"
    outputs.append(run_health_file(prom_file))

    report = json.loads(outputs[1])
    assert node_named(report, "as_dict")["reachable"] is True
    assert node_named(report, "as_dsn")["reachable"] is True
    failed = node_named(report, "wrong_password")
    assert failed["reachable"] is False and "password" in failed["error"]
    assert "********" in node_named(report, "as_dsn")["dsn"]
    assert "Connection strings" in outputs[0]
    for text in outputs:
        assert password not in text
        assert wrong not in text


def run_health_file(path: Path) -> str:
    run_health("--format", "prometheus", "--output", str(path))
    return path.read_text()


def test_app_counters_and_open_breaker_are_reported(pg_cluster: LocalCluster) -> None:
    from django_pg_resilience import stats

    # An alias of its own: the counters are process-wide and never go back down.
    alias = f"health_app_{uuid.uuid4().hex[:6]}"
    stats.increment("reconnects", alias, 3)
    stats.set_gauge("breaker_open", alias, 1)
    try:
        with database_alias(alias, pg_cluster.primary):
            code, report = run_health_json("--database", alias)
    finally:
        stats.set_gauge("breaker_open", alias, 0)

    node = node_named(report, alias)
    assert node["app"] == {"breaker_open": 1.0, "reconnects": 3.0}
    assert check(node, "circuit_breaker")["status"] == "WARNING"
    assert code == 1


def test_table_lists_members_and_problems_with_hints(pg_cluster: LocalCluster) -> None:
    with database_alias("writer", pg_cluster.standbys[0]):
        code, text = run_health("--database", "writer", "--no-color")
        _, colored = run_health("--database", "writer", "--force-color")

    assert code == 2
    lines = text.splitlines()
    assert lines[0].startswith("Cluster health: CRITICAL")
    header = next(line for line in lines if line.startswith("Member"))
    assert header.split() == ["Member", "Host", "Role", "State", "TL", "Lag", "Conn", "Status"]
    row = next(line for line in lines if line.startswith("writer"))
    assert "standby" in row and "streaming" in row and row.endswith("CRITICAL")
    problems = lines[lines.index("Problems:") + 1 :]
    assert problems[0].split()[:2] == ["CRITICAL", "writer:"]
    assert problems[1].strip().startswith("-> A failover moved the primary")
    assert "\033[" not in text
    assert "\033[1;31mCRITICAL" in colored


def test_unprivileged_user_is_unknown_until_granted_pg_monitor(
    pg_cluster: LocalCluster, set_nodes: Any
) -> None:
    user = f"health_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_user(user, "pw-monitor")
    set_nodes({"as_user": node_entry(pg_cluster.primary, USER=user, PASSWORD="pw-monitor")})
    with database_alias("health_primary", pg_cluster.primary):
        code, report = run_health_json("--database", "health_primary")
        queries = check(node_named(report, "as_user"), "queries")
        pg_cluster.primary.query(f'GRANT pg_monitor TO "{user}"')
        granted_code, granted = run_health_json("--database", "health_primary")

    assert code == 3 and report["status"] == "UNKNOWN"
    assert "insufficient privilege" in queries["message"]
    assert "pg_monitor" in queries["hint"]
    assert granted_code == 0, granted["summary"]
    standbys = node_named(granted, "as_user")["replication"]["standbys"]
    assert standbys[0]["state"] == "streaming"
