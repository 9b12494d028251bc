"""The report as JSON, Prometheus text exposition, or a Nagios plugin line."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from django_pg_resilience.health.report import HealthReport

__all__ = ["FORMATS", "render", "render_json", "render_nagios", "render_prometheus"]

FORMATS = ("table", "json", "prometheus", "nagios")


def render_json(report: HealthReport) -> str:
    return json.dumps(report.as_dict(), indent=2, sort_keys=False, default=str) + "\n"


# --- Prometheus -----------------------------------------------------------------

#: name -> (type, help). Every metric is prefixed ``pg_resilience_``.
PROMETHEUS_METRICS: dict[str, tuple[str, str]] = {
    "health_status": ("gauge", "Overall health: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."),
    "health_check_duration_seconds": ("gauge", "Wall time of the health check round."),
    "health_checked_timestamp_seconds": ("gauge", "Unix time the health check round started."),
    "node_health_status": ("gauge", "Health of one node: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."),
    "up": ("gauge", "1 if the node accepted a connection."),
    "is_primary": ("gauge", "1 if the node is a primary (not in recovery)."),
    "connect_seconds": ("gauge", "Time to connect to the node."),
    "timeline": ("gauge", "The node's current timeline."),
    "connections_used": ("gauge", "Client connections in use."),
    "connections_max": ("gauge", "max_connections."),
    "connections_used_ratio": ("gauge", "Client connections in use / max_connections."),
    "oldest_transaction_seconds": ("gauge", "Age of the oldest open transaction."),
    "standbys_streaming": ("gauge", "Standbys streaming from this primary."),
    "synchronous_lossless": ("gauge", "1 if a synchronous standby confirms every commit."),
    "synchronous_standbys": ("gauge", "Standbys in sync or quorum state on this primary."),
    "replication_lag_seconds": ("gauge", "Replay lag of a standby, seen from the primary."),
    "replication_lag_bytes": (
        "gauge",
        "WAL bytes a standby has not replayed, seen from the primary.",
    ),
    "replication_slot_active": ("gauge", "1 if the replication slot is in use."),
    "replication_slot_retained_bytes": ("gauge", "WAL bytes retained by the replication slot."),
    "standby_replay_delay_seconds": ("gauge", "Replay delay of this standby (0 when caught up)."),
    "standby_replay_lag_bytes": ("gauge", "WAL bytes received but not yet replayed."),
    "standby_wal_receiver_streaming": ("gauge", "1 if the standby's WAL receiver is streaming."),
    "digitalocean_api_up": ("gauge", "1 if the DigitalOcean API answered the last check."),
    "digitalocean_online": ("gauge", "1 if the DigitalOcean cluster status is online."),
    "digitalocean_nodes": ("gauge", "Nodes of the DigitalOcean cluster."),
    "digitalocean_last_failover_age_seconds": ("gauge", "Seconds since the last promotion."),
}


def _escape(value: Any) -> str:
    return str(value).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def prometheus_samples(report: HealthReport) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name without the ``pg_resilience_`` prefix, labels, value) for every gauge."""
    yield "health_status", {}, int(report.status)
    yield "health_check_duration_seconds", {}, report.duration_seconds
    yield "health_checked_timestamp_seconds", {}, report.checked_at.timestamp()
    for node in report.nodes:
        f = node.facts
        labels = {"node": node.target.name, "group": node.target.group}
        yield "node_health_status", labels, int(node.status)
        yield "up", labels, int(f.reachable)
        if not f.reachable:
            continue
        yield "is_primary", labels, int(f.role == "primary")
        optional = {
            "connect_seconds": f.connect_seconds,
            "timeline": f.timeline,
            "connections_used": f.connections_used,
            "connections_max": f.connections_max,
            "connections_used_ratio": f.connections_ratio,
            "oldest_transaction_seconds": f.oldest_transaction_seconds or 0.0,
        }
        for name, value in optional.items():
            if value is not None:
                yield name, labels, value
        if f.role == "primary":
            streaming = sum(1 for s in f.standbys if s.get("state") == "streaming")
            yield "standbys_streaming", labels, streaming
            lossless = next(
                (c.value for c in node.checks if c.name == "synchronous_replication"), False
            )
            yield "synchronous_lossless", labels, int(bool(lossless))
            synchronous = sum(1 for s in f.standbys if s.get("sync_state") in ("sync", "quorum"))
            yield "synchronous_standbys", labels, synchronous
            for standby in f.standbys:
                standby_labels = {**labels, "standby": str(standby.get("application_name") or "")}
                yield (
                    "replication_lag_seconds",
                    standby_labels,
                    standby.get("replay_lag_seconds") or 0.0,
                )
                if standby.get("replay_lag_bytes") is not None:
                    yield "replication_lag_bytes", standby_labels, standby["replay_lag_bytes"]
            for slot in f.slots:
                slot_labels = {**labels, "slot": str(slot.get("slot_name"))}
                yield "replication_slot_active", slot_labels, int(bool(slot.get("active")))
                if slot.get("retained_bytes") is not None:
                    yield "replication_slot_retained_bytes", slot_labels, slot["retained_bytes"]
        elif f.role == "standby":
            if f.replay_delay_seconds is not None:
                yield "standby_replay_delay_seconds", labels, f.replay_delay_seconds
            if f.replay_lag_bytes is not None:
                yield "standby_replay_lag_bytes", labels, f.replay_lag_bytes
            yield (
                "standby_wal_receiver_streaming",
                labels,
                int(f.wal_receiver_status == "streaming"),
            )
    do = report.digitalocean
    if do:
        yield "digitalocean_api_up", {"cluster": str(do.get("cluster"))}, int(not do.get("error"))
    if do and not do.get("error"):
        labels = {"cluster": str(do.get("cluster"))}
        yield "digitalocean_online", labels, int(do.get("status") == "online")
        if isinstance(do.get("num_nodes"), int):
            yield "digitalocean_nodes", labels, do["num_nodes"]
        if do.get("last_failover"):
            yield (
                "digitalocean_last_failover_age_seconds",
                labels,
                do["last_failover"]["age_seconds"],
            )


def render_prometheus(report: HealthReport) -> str:
    """Text exposition format 0.0.4, for node_exporter's textfile collector or a scrape."""
    by_metric: dict[str, list[str]] = {}
    for name, labels, value in prometheus_samples(report):
        label_text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
        sample = f"pg_resilience_{name}" + (f"{{{label_text}}}" if label_text else "")
        by_metric.setdefault(name, []).append(f"{sample} {float(value):g}")
    lines: list[str] = []
    for name, (kind, help_text) in PROMETHEUS_METRICS.items():
        if name not in by_metric:
            continue
        lines.append(f"# HELP pg_resilience_{name} {help_text}")
        lines.append(f"# TYPE pg_resilience_{name} {kind}")
        lines.extend(by_metric[name])
    return "\n".join(lines) + "\n"


# --- Nagios ---------------------------------------------------------------------

_LABEL_UNSAFE = re.compile(r"['=\s|]+")


def _perf_label(*parts: str) -> str:
    return "'" + _LABEL_UNSAFE.sub("_", "_".join(p for p in parts if p)) + "'"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def render_nagios(report: HealthReport) -> str:
    """``PG_RESILIENCE <STATUS> - summary | 'label'=value[UOM];warn;crit;min;max ...``."""
    perf: list[str] = []
    t = report.thresholds
    for node in report.nodes:
        f = node.facts
        name = node.target.name
        perf.append(f"{_perf_label(name, 'up')}={int(f.reachable)};;;0;1")
        if f.connections_ratio is not None:
            perf.append(
                f"{_perf_label(name, 'connections')}={f.connections_ratio * 100:.1f}%;"
                f"{_num(t.connections_warning * 100)};{_num(t.connections_critical * 100)};0;100"
            )
        for standby in f.standbys:
            lag = standby.get("replay_lag_seconds") or 0.0
            perf.append(
                f"{_perf_label(name, str(standby.get('application_name') or ''), 'lag')}="
                f"{lag:.3f}s;{_num(t.lag_warning)};{_num(t.lag_critical)};0;"
            )
        if f.role == "standby" and f.replay_delay_seconds is not None:
            perf.append(
                f"{_perf_label(name, 'replay_delay')}={f.replay_delay_seconds:.3f}s;"
                f"{_num(t.lag_warning)};{_num(t.lag_critical)};0;"
            )
    status = report.status.name
    line = f"PG_RESILIENCE {status} - {report.summary()}".replace("|", "/")
    return line + (" | " + " ".join(perf) if perf else "") + "\n"


def render(report: HealthReport, fmt: str, *, color: bool = False, show_dsn: bool = False) -> str:
    """The report in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        return render_json(report)
    if fmt == "prometheus":
        return render_prometheus(report)
    if fmt == "nagios":
        return render_nagios(report)
    if fmt == "table":
        from django_pg_resilience.health.table import render_table

        return render_table(report, color=color, show_dsn=show_dsn)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
