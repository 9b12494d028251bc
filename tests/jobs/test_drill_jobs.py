"""The drill's ``--jobs``: a Celery worker rides through the failover, each job once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from django_pg_resilience.testing.jobs import redis_binary

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.chaos,
    pytest.mark.skipif(redis_binary() is None, reason="redis-server is not installed"),
]


def test_the_drill_with_jobs_fulfils_every_order_once_through_the_crash(tmp_path: Path) -> None:
    report_path = tmp_path / "drill.json"
    options = ["--scenario", "crash", "--duration", "8", "--fault-at", "3", "--drain", "5"]
    options += ["--jobs", "200", "--quiet", "--json", str(report_path)]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "example_project.drill",
            *options,
            "--server-log",
            str(tmp_path / "server.log"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert report_path.exists(), f"no report (exit {result.returncode}):\n{result.stderr}"
    summary = json.loads(report_path.read_text())
    jobs = summary["jobs"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["invariants"]["no_lost_job"] and summary["invariants"]["no_duplicated_job"]
    assert jobs["states"] == {"SUCCESS": jobs["messages_sent"]}
    assert jobs["messages_sent"] > jobs["jobs"] == jobs["fulfilled_orders"] == 200
    assert jobs["pool_process_killed"] is not None
    assert "Background jobs" in result.stdout


def test_jobs_are_refused_with_the_stock_engine() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "example_project.drill", "--engine", "stock", "--jobs", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--jobs runs idempotent Celery tasks" in result.stderr
