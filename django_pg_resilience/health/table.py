"""The report for a person: one row per member (like ``patronictl list``), then what to fix."""

from __future__ import annotations

from collections.abc import Callable

from django_pg_resilience.health.probe import NodeFacts
from django_pg_resilience.health.providers import registered
from django_pg_resilience.health.report import HealthReport, NodeReport
from django_pg_resilience.health.status import Status

__all__ = ["render_table"]

_COLORS = {
    Status.OK: "\033[32m",
    Status.WARNING: "\033[33m",
    Status.CRITICAL: "\033[1;31m",
    Status.UNKNOWN: "\033[35m",
}
_RESET = "\033[0m"
_HEADER = ("Member", "Host", "Role", "State", "TL", "Lag", "Conn", "Status")


def _state(facts: NodeFacts) -> str:
    if not facts.reachable:
        return "unreachable"
    if facts.role == "standby":
        if facts.replay_paused:
            return "paused"
        return facts.wal_receiver_status or "?"
    return "running"


def _lag(seconds: float | None, lag_bytes: int | None) -> str:
    if seconds is None and lag_bytes is None:
        return ""
    text = "? s" if seconds is None else f"{seconds:.1f} s"
    return text if lag_bytes is None else f"{text} / {_bytes(lag_bytes)}"


def _bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


Row = tuple[tuple[str, ...], Status | None]


def render_table(report: HealthReport, *, color: bool = False, show_dsn: bool = False) -> str:
    """A fixed-width table and the list of problems with hints."""

    def paint(status: Status, text: str) -> str:
        return f"{_COLORS[status]}{text}{_RESET}" if color else text

    out = [
        f"Cluster health: {paint(report.status, report.status.name)}  "
        f"({len(report.nodes)} node{'s' if len(report.nodes) != 1 else ''}, "
        f"{report.duration_seconds:.2f} s, {report.checked_at:%Y-%m-%d %H:%M:%S} UTC)",
        "",
    ]
    if report.nodes:
        out += _member_table([row for node in report.nodes for row in _rows(node)], paint)
    for provider in registered():
        facts = report.providers.get(provider.name)
        if facts is not None:
            out += provider.table_lines(facts)
    out += _problems(report, paint)
    if show_dsn and report.nodes:
        out += ["", "Connection strings (passwords masked):"]
        out += [f"  {node.target.name}: {node.target.dsn}" for node in report.nodes]
    return "\n".join(out) + "\n"


def _rows(node: NodeReport) -> list[Row]:
    """The member's row, then one per standby streaming from it."""
    f = node.facts
    target = node.target
    ratio = f.connections_ratio
    rows: list[Row] = [
        (
            (
                target.name,
                f"{target.host}:{target.port}" if target.port else target.host,
                f.role or "?",
                _state(f),
                "" if f.timeline is None else str(f.timeline),
                _lag(f.replay_delay_seconds, f.replay_lag_bytes) if f.role == "standby" else "",
                "" if ratio is None else f"{ratio:.0%}",
                node.status.name,
            ),
            node.status,
        )
    ]
    for standby in f.standbys:
        lag = _lag(standby.get("replay_lag_seconds") or 0.0, standby.get("replay_lag_bytes"))
        state = f"{standby.get('state') or '?'} ({standby.get('sync_state') or '?'})"
        name = f"  `- {standby.get('application_name') or '?'}"
        rows.append(
            ((name, str(standby.get("client_addr") or ""), "standby", state, "", lag, "", ""), None)
        )
    return rows


def _member_table(rows: list[Row], paint: Callable[[Status, str], str]) -> list[str]:
    """The header and the rows, each column as wide as its widest cell."""
    widths = [
        max(len(cells[i]) for cells in [_HEADER, *(r for r, _ in rows)])
        for i in range(len(_HEADER))
    ]

    def line(cells: tuple[str, ...], status: Status | None) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
        if status is not None:
            padded[-1] = paint(status, padded[-1])
        return "  ".join(padded).rstrip()

    return [line(_HEADER, None), *(line(cells, status) for cells, status in rows)]


def _problems(report: HealthReport, paint: Callable[[Status, str], str]) -> list[str]:
    """What is not OK, worst first, each with its hint."""
    problems = report.problems
    if not problems:
        if not report.nodes and not report.checks:
            return [report.summary()]
        return ["", "All checks passed."]
    out = ["", "Problems:"]
    for name, check in problems:
        where = f"{name}: " if name else ""
        out.append(f"  {paint(check.status, check.status.name.ljust(8))} {where}{check.message}")
        if check.hint:
            out.append(f"           -> {check.hint}")
    return out
