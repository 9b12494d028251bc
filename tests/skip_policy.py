"""Skips are reported at the end, and under CI they fail the run.

A test of this suite skips only when something it needs is missing from the
machine: redis-server, network namespaces (root and ``ip``), PgBouncer,
PostGIS, promtool, Chromium, an optional Python package. On a developer's
machine that is a convenience; in CI it would turn the Celery, silent-peer,
PgBouncer, PostGIS or browser tests into a green run that never ran them. So:

* every run ends with the skips grouped by reason ("skipped, and why");
* under ``CI=true`` (``.ci/run`` exports it) or with ``PG_RESILIENCE_NO_SKIPS=1``
  every skip is a failure: a skipped test is reported failed with its reason,
  and a module skipped at collection makes the run exit non-zero.

There is no list of components to keep in sync: CI installs all of them
(``python3 tests/run.py`` as root does), so any skip there is a component
missing. Deselection (``-m "not chaos"``) is not a skip and is unaffected.

tests/conftest.py registers this plugin; ``-p tests.skip_policy`` loads it
elsewhere.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Generator
from typing import Any

import pytest

#: Environment variables that make every skip a failure.
STRICT_ENV = ("CI", "PG_RESILIENCE_NO_SKIPS")
SUMMARY_TITLE = "skipped, and why"


def strict() -> bool:
    """True in CI: a skip is a component missing from the machine, and fails the run."""
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes") for name in STRICT_ENV
    )


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    return reason.removeprefix("Skipped: ")


class SkipLedger:
    """The skips of this run: reason -> node ids."""

    def __init__(self) -> None:
        self.by_reason: dict[str, list[str]] = defaultdict(list)
        self.collection_skips = 0

    def add(self, reason: str, nodeid: str) -> None:
        self.by_reason[reason].append(nodeid)


_ledger = SkipLedger()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    _ledger.add(reason, item.nodeid)
    if strict():
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under CI, where every component the suite needs must be installed: {reason}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if report.skipped:
        # Left a skip (a failed collection would stop the whole run): counted, and the
        # session's exit status says so at the end.
        _ledger.add(skip_reason(report), report.nodeid)
        _ledger.collection_skips += 1


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    passed = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    if strict() and _ledger.collection_skips and exitstatus in passed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ledger.by_reason:
        return
    write = terminalreporter.write_line
    terminalreporter.section(SUMMARY_TITLE)
    total = sum(len(ids) for ids in _ledger.by_reason.values())
    for reason, nodeids in sorted(_ledger.by_reason.items(), key=lambda kv: -len(kv[1])):
        write(f"{len(nodeids):4d}  {reason}")
        for nodeid in nodeids[:3]:
            write(f"        {nodeid}")
        if len(nodeids) > 3:
            write(f"        ... and {len(nodeids) - 3} more")
    if strict():
        write(
            f"FAILED: {total} skipped under CI (a component the suite needs is missing; "
            "python3 tests/run.py as root installs them)",
            red=True,
            bold=True,
        )
    else:
        write(f"{total} skipped (under CI=true each would fail the run)", yellow=True)
