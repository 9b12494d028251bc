"""The drill with PgBouncer (transaction pooling) between the shop and the endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.drill.test_drill import run_drill

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


def test_drill_behind_pgbouncer_with_the_recommended_settings(tmp_path: Path) -> None:
    result, summary = run_drill(tmp_path, "--pgbouncer", "recommended")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "PgBouncer (recommended settings)" in result.stdout
    assert summary["options"]["pgbouncer"] == "recommended"
    assert summary["ok"] is True
    assert summary["requests"]["by_status"]["500"] == 0
    # Only asynchronous replication's window may lose an acknowledged order (test_drill.py).
    assert summary["orders"]["lost"] == summary["orders"]["lost_unreplicated"]
    assert summary["orders"]["duplicated"] == 0
    # PgBouncer retries the server login every second: the shop answers within
    # a few seconds of the endpoint moving (PgBouncer's 15 s default: 12-13 s here).
    recovery = summary["requests"]["recovery_lag"]
    assert recovery is not None and recovery < 5.0
