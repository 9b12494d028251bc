"""The drill's replica scenario: its report, and a short real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from example_project.drill.replica import render, summarize

ROOT = Path(__file__).resolve().parent.parent.parent
OPTIONS = {"replica_delay_ms": 300.0}


def _request(kind: str, end: float, status: int = 200, read_from: str = "default") -> dict:
    return {"kind": kind, "start": end - 0.01, "end": end, "status": status, "read_from": read_from}


def test_the_report_splits_reads_by_alias_around_the_kill() -> None:
    requests = [
        _request("order", 0.1),
        _request("own", 0.2),
        _request("browse", 0.5, read_from="replica"),
        _request("own", 0.9, read_from="replica"),
        _request("browse", 2.5),
    ]
    summary = summarize(requests, killed_at=2.0, options=OPTIONS)
    assert summary["ok"] is True
    assert summary["reads_by_alias"] == {
        "before": {"default": 1, "replica": 2},
        "after": {"default": 1},
    }
    assert summary["replica_share"] == 0.5
    assert summary["own_reads_from_replica"] == 1
    assert "share served by the replica  50.0%" in render(summary)


def test_a_stale_own_read_or_an_error_breaks_the_invariants() -> None:
    base = [_request("browse", 0.5, read_from="replica")]
    stale = summarize([*base, _request("own", 0.6, status=404)], 2.0, OPTIONS)
    assert stale["stale_own_reads"] == 1 and stale["errors"] == 0 and not stale["ok"]
    failed = summarize([*base, _request("browse", 2.1, status=503)], 2.0, OPTIONS)
    assert failed["errors"] == 1 and failed["errors_by_status"] == {"503": 1}
    assert not failed["ok"]
    unused = summarize([_request("browse", 0.5)], 2.0, OPTIONS)
    assert not unused["ok"]  # the replica served nothing


@pytest.mark.slow
@pytest.mark.chaos
def test_the_replica_drill_has_no_stale_own_read_and_no_error(tmp_path: Path) -> None:
    report_path = tmp_path / "drill.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "example_project.drill",
            "--scenario",
            "replica",
            "--duration",
            "8",
            "--concurrency",
            "4",
            "--workers",
            "2",
            "--json",
            str(report_path),
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
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["stale_own_reads"] == 0
    assert summary["errors"] == 0
    assert summary["reads_by_alias"]["before"].get("replica", 0) > 0
