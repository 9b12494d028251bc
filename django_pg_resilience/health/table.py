"""The report for a person: one row per member (like ``patronictl list``), then what to fix."""

from __future__ import annotations

from django_pg_resilience.health.pgbouncer import RECOMMENDED
from django_pg_resilience.health.probe import NodeFacts
from django_pg_resilience.health.report import HealthReport
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


def render_table(report: HealthReport, *, color: bool = False, show_dsn: bool = False) -> str:
    """A fixed-width table and the list of problems with hints."""

    def paint(status: Status, text: str) -> str:
        return f"{_COLORS[status]}{text}{_RESET}" if color else text

    rows: list[tuple[tuple[str, ...], Status | None]] = []
    for node in report.nodes:
        f = node.facts
        ratio = f.connections_ratio
        own_lag = _lag(f.replay_delay_seconds, f.replay_lag_bytes) if f.role == "standby" else ""
        rows.append(
            (
                (
                    node.target.name,
                    f"{node.target.host}:{node.target.port}"
                    if node.target.port
                    else node.target.host,
                    f.role or "?",
                    _state(f),
                    "" if f.timeline is None else str(f.timeline),
                    own_lag,
                    "" if ratio is None else f"{ratio:.0%}",
                    node.status.name,
                ),
                node.status,
            )
        )
        for standby in f.standbys:
            rows.append(
                (
                    (
                        f"  `- {standby.get('application_name') or '?'}",
                        str(standby.get("client_addr") or ""),
                        "standby",
                        f"{standby.get('state') or '?'} ({standby.get('sync_state') or '?'})",
                        "",
                        _lag(
                            standby.get("replay_lag_seconds") or 0.0,
                            standby.get("replay_lag_bytes"),
                        ),
                        "",
                        "",
                    ),
                    None,
                )
            )
    widths = [
        max(len(cells[i]) for cells in [_HEADER, *(r for r, _ in rows)])
        for i in range(len(_HEADER))
    ]

    def line(cells: tuple[str, ...], status: Status | None) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
        if status is not None:
            padded[-1] = paint(status, padded[-1])
        return "  ".join(padded).rstrip()

    out = [
        f"Cluster health: {paint(report.status, report.status.name)}  "
        f"({len(report.nodes)} node{'s' if len(report.nodes) != 1 else ''}, "
        f"{report.duration_seconds:.2f} s, {report.checked_at:%Y-%m-%d %H:%M:%S} UTC)",
        "",
    ]
    if report.nodes:
        out.append(line(_HEADER, None))
        out.extend(line(cells, status) for cells, status in rows)
    do = report.digitalocean
    if do and not do.get("error"):
        last = do.get("last_failover")
        out += [
            "",
            f"DigitalOcean {do.get('name') or do.get('cluster')}: {do.get('status')}, "
            f"{do.get('num_nodes')} node(s), last failover: "
            + (f"{last['at']} ({last['age_seconds'] / 60:.0f} min ago)" if last else "none listed"),
        ]
        out += [
            f"  node {node['node']}: "
            + (
                node["error"]
                if node.get("error")
                else ", ".join(
                    f"{resource} {node[f'{resource}_ratio']:.0%}"
                    for resource in ("cpu", "memory", "disk")
                    if node.get(f"{resource}_ratio") is not None
                )
            )
            for node in do.get("nodes") or []
        ]
    for bouncer in report.pgbouncers or []:
        if bouncer.get("error"):
            out += ["", f"PgBouncer {bouncer['name']}: unreachable"]
            continue
        config = bouncer["config"]
        out += [
            "",
            f"PgBouncer {bouncer['name']}: {bouncer['clients_waiting']} waiting "
            f"(longest {bouncer['max_wait_seconds']:.1f} s), servers "
            + (
                ", ".join(f"{n} {state}" for state, n in sorted(bouncer["servers"].items()))
                or "none"
            ),
            "  " + ", ".join(f"{key} {config[key]}" for key in RECOMMENDED if key in config),
        ]
    problems = report.problems
    if problems:
        out += ["", "Problems:"]
        for name, check in problems:
            where = f"{name}: " if name else ""
            out.append(
                f"  {paint(check.status, check.status.name.ljust(8))} {where}{check.message}"
            )
            if check.hint:
                out.append(f"           -> {check.hint}")
    elif not report.nodes and not report.checks:
        out.append(report.summary())
    else:
        out += ["", "All checks passed."]
    if show_dsn and report.nodes:
        out += ["", "Connection strings (passwords masked):"]
        out += [f"  {node.target.name}: {node.target.dsn}" for node in report.nodes]
    return "\n".join(out) + "\n"
