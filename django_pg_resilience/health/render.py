"""The report as JSON or Prometheus text exposition; :func:`render` picks any format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django_pg_resilience.health.probe import NodeFacts
from django_pg_resilience.health.providers import Sample, prometheus_metrics, registered
from django_pg_resilience.health.report import HealthReport, NodeReport

__all__ = [
    "FORMATS",
    "PROMETHEUS_METRICS",
    "all_prometheus_metrics",
    "prometheus_samples",
    "render",
    "render_json",
    "render_prometheus",
]

FORMATS = ("table", "json", "prometheus", "nagios")


def render_json(report: HealthReport) -> str:
    return json.dumps(report.as_dict(), indent=2, sort_keys=False, default=str) + "\n"


# --- Prometheus -----------------------------------------------------------------

#: The nodes' gauges: name -> (type, help). Every metric is prefixed ``pg_resilience_``;
#: the providers add theirs (:func:`all_prometheus_metrics`).
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
}


def all_prometheus_metrics() -> dict[str, tuple[str, str]]:
    """The nodes' gauges and every provider's: name -> (type, help)."""
    return prometheus_metrics(PROMETHEUS_METRICS)


def _escape(value: Any) -> str:
    return str(value).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def prometheus_samples(report: HealthReport) -> Iterator[Sample]:
    """(name without the ``pg_resilience_`` prefix, labels, value) for every gauge."""
    yield "health_status", {}, int(report.status)
    yield "health_check_duration_seconds", {}, report.duration_seconds
    yield "health_checked_timestamp_seconds", {}, report.checked_at.timestamp()
    for node in report.nodes:
        yield from _node_samples(node)
    for provider in registered():
        facts = report.providers.get(provider.name)
        if facts is not None:
            yield from provider.samples(facts)


def _node_samples(node: NodeReport) -> Iterator[Sample]:
    f = node.facts
    labels = {"node": node.target.name, "group": node.target.group}
    yield "node_health_status", labels, int(node.status)
    yield "up", labels, int(f.reachable)
    if not f.reachable:
        return
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
        yield from _primary_samples(node, labels)
    elif f.role == "standby":
        yield from _standby_samples(f, labels)


def _primary_samples(node: NodeReport, labels: dict[str, str]) -> Iterator[Sample]:
    f = node.facts
    yield "standbys_streaming", labels, sum(1 for s in f.standbys if s.get("state") == "streaming")
    lossless = next((c.value for c in node.checks if c.name == "synchronous_replication"), False)
    yield "synchronous_lossless", labels, int(bool(lossless))
    synchronous = sum(1 for s in f.standbys if s.get("sync_state") in ("sync", "quorum"))
    yield "synchronous_standbys", labels, synchronous
    for standby in f.standbys:
        standby_labels = {**labels, "standby": str(standby.get("application_name") or "")}
        lag = standby.get("replay_lag_seconds") or 0.0
        yield "replication_lag_seconds", standby_labels, lag
        if standby.get("replay_lag_bytes") is not None:
            yield "replication_lag_bytes", standby_labels, standby["replay_lag_bytes"]
    for slot in f.slots:
        slot_labels = {**labels, "slot": str(slot.get("slot_name"))}
        yield "replication_slot_active", slot_labels, int(bool(slot.get("active")))
        if slot.get("retained_bytes") is not None:
            yield "replication_slot_retained_bytes", slot_labels, slot["retained_bytes"]


def _standby_samples(f: NodeFacts, labels: dict[str, str]) -> Iterator[Sample]:
    if f.replay_delay_seconds is not None:
        yield "standby_replay_delay_seconds", labels, f.replay_delay_seconds
    if f.replay_lag_bytes is not None:
        yield "standby_replay_lag_bytes", labels, f.replay_lag_bytes
    yield "standby_wal_receiver_streaming", labels, int(f.wal_receiver_status == "streaming")


def render_prometheus(report: HealthReport) -> str:
    """Text exposition format 0.0.4, for node_exporter's textfile collector or a scrape."""
    by_metric: dict[str, list[str]] = {}
    for name, labels, value in prometheus_samples(report):
        label_text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
        sample = f"pg_resilience_{name}" + (f"{{{label_text}}}" if label_text else "")
        by_metric.setdefault(name, []).append(f"{sample} {float(value):g}")
    lines: list[str] = []
    for name, (kind, help_text) in all_prometheus_metrics().items():
        if name not in by_metric:
            continue
        lines.append(f"# HELP pg_resilience_{name} {help_text}")
        lines.append(f"# TYPE pg_resilience_{name} {kind}")
        lines.extend(by_metric[name])
    return "\n".join(lines) + "\n"


def render(report: HealthReport, fmt: str, *, color: bool = False, show_dsn: bool = False) -> str:
    """The report in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        return render_json(report)
    if fmt == "prometheus":
        return render_prometheus(report)
    if fmt == "nagios":
        from django_pg_resilience.health.nagios import render_nagios

        return render_nagios(report)
    if fmt == "table":
        from django_pg_resilience.health.table import render_table

        return render_table(report, color=color, show_dsn=show_dsn)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
