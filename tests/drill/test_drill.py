"""The README's drill, short: on our stack it keeps its invariants, on stock Django it does not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


def run_drill(
    tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report_path = tmp_path / "drill.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "example_project.drill",
            "--scenario",
            "crash",
            "--duration",
            "10",
            "--fault-at",
            "3",
            "--quiet",
            "--json",
            str(report_path),
            "--server-log",
            str(tmp_path / "server.log"),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert report_path.exists(), f"no report (exit {result.returncode}):\n{result.stderr}"
    return result, json.loads(report_path.read_text())


def test_crash_drill_keeps_every_acknowledged_order_exactly_once(tmp_path: Path) -> None:
    result, summary = run_drill(tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["ok"] is True
    assert summary["requests"]["by_status"]["500"] == 0
    orders = summary["orders"]
    # Asynchronous replication may lose what the old primary acknowledged just
    # before the crash (found there afterwards); the app loses nothing.
    assert orders["lost"] == orders["lost_unreplicated"]
    assert orders["duplicated"] == 0
    assert orders["unique_acknowledged"] > 0
    # Every other acknowledged order is in the database, and nothing is there twice.
    assert orders["unique_in_database"] >= orders["unique_acknowledged"] - orders["lost"]
    assert orders["in_database"] == orders["unique_in_database"]
    # Readers wait out the failover instead of failing: at most the few caught in
    # flight get a 503 (stock Django fails about a quarter of them here).
    storefront = summary["storefront"]
    assert storefront["requests"] > 0
    assert storefront["errors"] <= 0.1 * storefront["requests"]
    webhooks = summary["webhooks"]
    assert webhooks["answered_duplicate"] > 0  # redeliveries were recognised
    assert webhooks["gave_up"] == 0
    # The failover happened, and traffic succeeded after the endpoint moved.
    events = summary["events"]
    assert events["fault"] < events["promoted"] <= events["endpoint_moved"]
    assert summary["requests"]["recovery_lag"] is not None
    after_move = [row for row in summary["timeline"] if row["second"] > events["endpoint_moved"]]
    assert sum(row["2xx"] for row in after_move) > 0
    assert "Drill PASSED" in result.stdout


def test_stock_django_shows_errors_in_the_same_drill(tmp_path: Path) -> None:
    # Stock answers every redelivery with a 500 and the senders retry those for a
    # while: a short drain is enough to see it.
    result, summary = run_drill(tmp_path, "--engine", "stock", "--drain", "3")

    assert result.returncode == 1, result.stdout + result.stderr
    assert summary["ok"] is False
    assert summary["options"]["engine"] == "stock"
    # Stock Django answers 500 to the outage and to every redelivery.
    assert summary["requests"]["by_status"]["500"] > 0
    assert summary["invariants"]["no_500"] is False
    assert summary["webhooks"]["answered_duplicate"] == 0
    assert summary["storefront"]["errors"] > 0
    assert "Drill FAILED" in result.stdout
