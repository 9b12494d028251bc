"""The drill's ``--jobs``: a Celery worker rides through the failover, each job once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from django_pg_resilience.testing.jobs import redis_binary

ROOT = Path(__file__).resolve().parent.parent.parent

#: The drill runs: a subprocess with servers of its own, for a minute.
drill_run = pytest.mark.skipif(redis_binary() is None, reason="redis-server is not installed")


@pytest.mark.slow
@pytest.mark.chaos
@drill_run
def test_the_drill_with_jobs_fulfils_every_order_once_through_a_long_failover(
    tmp_path: Path,
) -> None:
    report_path = tmp_path / "drill.json"
    # A 25 s failover: longer than the old fixed retry count lasted; the traffic
    # and the drain grow to cover it.
    options = ["--scenario", "crash", "--duration", "8", "--fault-at", "3", "--outage", "25"]
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
        # The jobs drain within seconds of the move rather than within a minute.
        env={**os.environ, "JOB_OUTAGE_RETRY_CAP": "5"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report_path.exists(), f"no report (exit {result.returncode}):\n{result.stderr}"
    summary = json.loads(report_path.read_text())
    jobs = summary["jobs"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["invariants"]["no_lost_job"] and summary["invariants"]["no_duplicated_job"]
    assert jobs["states"] == {"SUCCESS": jobs["messages_sent"]}
    assert jobs["messages_sent"] > jobs["jobs"] == jobs["fulfilled_orders"] == 200
    assert jobs["pool_process_killed"] is not None
    events = summary["events"]
    assert events["endpoint_moved"] - events["fault"] >= 25
    assert summary["options"]["duration"] >= 3 + 25 + 10
    # Shopify-like senders kept retrying through the outage: nothing given up, no 500.
    webhooks, orders = summary["webhooks"], summary["orders"]
    assert webhooks["gave_up"] == 0 and webhooks["answers_500"] == 0
    assert webhooks["answers_503"] > 0
    assert orders["lost"] == orders["duplicated"] == 0
    assert summary["requests"]["webhooks_drained_after_move"] is not None
    assert jobs["drained_after_move"] is not None
    assert "Background jobs" in result.stdout and "outage=25.0 s" in result.stdout


@pytest.mark.slow
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


def test_the_senders_squeeze_shopifys_eight_doubling_retries_into_the_outage() -> None:
    from example_project.drill.traffic import shopify_wait

    waits = [shopify_wait(retry, 255.0) for retry in range(1, 11)]
    assert waits[:8] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert sum(waits[:8]) == 255.0
    # Past Shopify's eighth retry, a drill sender keeps the last wait until the drain ends.
    assert waits[8:] == [128, 128]


def test_the_backlog_drains_when_the_last_delivery_sent_before_the_move_is_acknowledged() -> None:
    from example_project.drill.report import drained_after_move

    def attempt(delivery: str, start: float, end: float, status: int) -> dict[str, object]:
        return {
            "kind": "webhook",
            "delivery": delivery,
            "redelivery": False,
            "start": start,
            "end": end,
            "status": status,
        }

    attempts = [
        attempt("a", 1.0, 1.1, 503),
        attempt("a", 12.0, 12.1, 200),  # met the outage: acknowledged 2.1 s after the move
        attempt("b", 2.0, 2.1, 503),
        attempt("b", 11.0, 11.2, 200),
        attempt("c", 10.5, 10.6, 200),  # sent after the move: not backlog
        attempt("d", 0.5, 0.6, 200),  # acknowledged before the fault
    ]
    assert drained_after_move(attempts, 10.0) == pytest.approx(2.1)
    assert drained_after_move(attempts[-2:], 10.0) is None


def test_the_outage_option_says_what_is_wrong_with_it() -> None:
    from example_project.drill.cli import cover_the_outage, parse_args

    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--outage", "0"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        parse_args(["--outage", "60", "--scenario", "replica"])
    args = parse_args(["--outage", "120", "--duration", "8", "--fault-at", "3"])
    cover_the_outage(args, 3.0)
    assert (args.promotion_delay, args.duration, args.drain) == (120.0, 133.0, 120.0)
