"""`python -m django health` as a real process: exit status, --output, --watch and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from django_pg_resilience.testing import LocalCluster
from tests.health.conftest import node_entry

ROOT = Path(__file__).resolve().parents[2]


def health_env(cluster: LocalCluster, **nodes: Any) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HEALTH_TEST_HOST": cluster.primary.host,
        "HEALTH_TEST_PORT": str(cluster.primary.port),
        "HEALTH_TEST_NODES": json.dumps(nodes),
    }


def health_command(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "django",
        "health",
        "--settings=tests.health.subprocess_settings",
        *args,
    ]


def test_real_process_exit_status_and_output_file(pg_cluster: LocalCluster, tmp_path: Path) -> None:
    env = health_env(pg_cluster, replica=node_entry(pg_cluster.standbys[0], ROLE="standby"))
    table = subprocess.run(
        health_command(), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert table.returncode == 0, table.stdout + table.stderr
    assert "Cluster health: OK" in table.stdout
    assert "\033[" not in table.stdout  # no colour when stdout is not a terminal
    assert pg_cluster.standbys[0].name in table.stdout

    target = tmp_path / "pg.prom"
    target.write_text("old contents\n")
    written = subprocess.run(
        health_command("--format", "prometheus", "--output", str(target)),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert written.returncode == 0, written.stderr
    assert written.stdout == ""
    names = {f.name for f in text_string_to_metric_families(target.read_text())}
    assert "pg_resilience_up" in names
    assert [p.name for p in tmp_path.iterdir()] == ["pg.prom"]  # no temp file left behind


def test_unreachable_process_exits_2_and_bad_config_exits_3(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HEALTH_TEST_PORT": "1",  # nothing listens on port 1: refused at once
    }
    down = subprocess.run(
        health_command("--format", "nagios"), env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert down.returncode == 2
    assert down.stdout.startswith("PG_RESILIENCE CRITICAL - default: unreachable")

    env["HEALTH_TEST_NODES"] = json.dumps({"bad": 42})
    bad = subprocess.run(health_command(), env=env, cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 3
    assert "PG_RESILIENCE['NODES']['bad']" in bad.stderr


def start_watch(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``manage.py health`` in a process of its own, its output piped back as text."""
    return subprocess.Popen(
        health_command(*args),
        # SIGABRT dumps every thread's stack: a hang explains itself.
        env={**env, "PYTHONFAULTHANDLER": "1"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_watch_refreshes_until_ctrl_c(pg_cluster: LocalCluster) -> None:
    env = health_env(pg_cluster, replica=node_entry(pg_cluster.standbys[0]))
    process = start_watch(env, "--watch", "0.2", "--format", "nagios")
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]  # two rounds, then Ctrl-C
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            out, err = process.communicate(timeout=10)
            pytest.fail(f"still running 30 s after Ctrl-C; stdout ends {out[-300:]!r}; {err}")
    finally:
        if process.poll() is None:
            process.kill()
    assert all(line.startswith("PG_RESILIENCE OK - ") for line in lines), lines
    assert process.returncode == 0
    assert "Traceback" not in err


def test_watch_ends_at_a_second_ctrl_c_in_the_middle_of_a_round(pg_cluster: LocalCluster) -> None:
    """The first Ctrl-C lets the round in progress finish (up to --timeout); a second one ends
    it at once, still without a traceback. No round finished: the status is UNKNOWN (3)."""
    from django_pg_resilience.testing import EndpointProxy

    with EndpointProxy(pg_cluster.standbys[0]) as proxy:
        proxy.blackhole()
        env = health_env(pg_cluster, hole=node_entry(proxy))
        process = start_watch(env, "--watch", "0.2", "--timeout", "60", "--format", "nagios")
        try:
            deadline = time.monotonic() + 30
            while proxy.open_connections == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert proxy.open_connections, "the round never reached the blackholed node"
            deadline = time.monotonic() + 30  # half the round's own timeout
            while process.poll() is None and time.monotonic() < deadline:
                process.send_signal(signal.SIGINT)
                time.sleep(0.2)  # the repeat, not a wait for anything
            assert process.poll() is not None, "still in the round after repeated Ctrl-C"
            out, err = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)
    assert process.returncode == 3
    assert "Traceback" not in err
    assert "PG_RESILIENCE" not in out  # no round was reported


def test_bounded_run_time_with_a_blackholed_node(pg_cluster: LocalCluster) -> None:
    from django_pg_resilience.testing import EndpointProxy

    with EndpointProxy(pg_cluster.standbys[0]) as proxy:
        proxy.blackhole()
        env = health_env(pg_cluster, hole=node_entry(proxy))
        started = time.monotonic()
        result = subprocess.run(
            health_command("--format", "json", "--timeout", "2"),
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        elapsed = time.monotonic() - started
    report = json.loads(result.stdout)
    assert result.returncode == 1  # an extra node with no declared role: a warning
    hole = next(n for n in report["nodes"] if n["name"] == "hole")
    assert hole["reachable"] is False
    assert elapsed < 10  # Django start-up + 2 s, with room for a loaded machine
