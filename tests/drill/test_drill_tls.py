"""The crash drill over TLS: TLS-only nodes (plain TCP refused), sslmode=verify-full."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.drill.test_drill import run_drill

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


def test_crash_drill_over_verify_full_keeps_its_invariants(tmp_path: Path) -> None:
    result, summary = run_drill(tmp_path, "--tls")

    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["options"]["tls"] is True
    assert "TLS only" in result.stderr + result.stdout
    assert summary["ok"] is True
    assert summary["requests"]["by_status"]["500"] == 0
    # Only asynchronous replication's window may lose an acknowledged order (test_drill.py).
    assert summary["orders"]["lost"] == summary["orders"]["lost_unreplicated"]
    assert summary["orders"]["duplicated"] == 0
    assert summary["orders"]["unique_acknowledged"] > 0
