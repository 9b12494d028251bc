"""In-process counters and gauges, mirrored to Prometheus when it is installed.

``django_pg_resilience.stats`` is what ``manage.py health`` shows as "the
app's own view": how many retries, reconnects and failovers this process has
seen. Counters are labelled by one value (a database alias or a webhook
source) and are safe to bump from many threads.

Usage::

    from django_pg_resilience import stats

    stats.increment("reconnects", alias)
    stats.set_gauge("breaker_open", alias, 1)
    stats.snapshot()  # {"reconnects": {"default": 3}, ...}
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any, Literal

MultiprocessMode = Literal[
    "all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent",
    "livemostrecent",
]  # fmt: skip

__all__ = [
    "GAUGE_MULTIPROCESS_MODE",
    "METRICS",
    "create_prometheus_metrics",
    "increment",
    "reset",
    "set_gauge",
    "snapshot",
]

#: name -> (kind, help, label name). Prometheus metrics are named
#: ``pg_resilience_<name>`` (counters get prometheus_client's ``_total``).
METRICS: dict[str, tuple[str, str, str]] = {
    "connect_attempts": ("counter", "Connection attempts made by the backend.", "alias"),
    "connect_failures": ("counter", "Connection attempts that failed.", "alias"),
    "retries": ("counter", "Operations retried after a failover-class error.", "alias"),
    "reconnects": ("counter", "Broken connections replaced by new ones.", "alias"),
    "failovers": ("counter", "Failovers detected (the server behind the alias changed).", "alias"),
    "retries_exhausted": ("counter", "Operations that gave up retrying.", "alias"),
    "failover_errors": ("counter", "FailoverError raised to callers.", "alias"),
    "unavailable_errors": ("counter", "DatabaseUnavailable raised to callers.", "alias"),
    "pool_timeouts": (
        "counter",
        "Pool checkouts that timed out: the pool was busy (load, not an outage).",
        "alias",
    ),
    "liveness_checks": (
        "counter",
        "Out-of-band checks that a long-waiting statement's server is still alive.",
        "alias",
    ),
    "silent_peer_aborts": (
        "counter",
        "Statements abandoned because their server was found dead, replaced or silent.",
        "alias",
    ),
    "breaker_open": ("gauge", "1 while the circuit breaker is open.", "alias"),
    "breaker_opened": ("counter", "Times the circuit breaker opened.", "alias"),
    "unavailable_responses": ("counter", "503 responses sent by the middleware.", "alias"),
    "webhooks_received": ("counter", "Webhook deliveries verified and stored.", "source"),
    "webhooks_duplicates": ("counter", "Webhook deliveries answered as duplicates.", "source"),
    "webhooks_failed": ("counter", "Webhook deliveries whose handler failed.", "source"),
    "webhooks_durable_ack_waits": ("counter", "Durable-ack waits for standby flush.", "source"),
    "webhooks_durable_ack_timeouts": ("counter", "Durable acks not confirmed in time.", "source"),
    "health_probe_connections": (
        "counter",
        "Connections the health checks opened to a database node.",
        "node",
    ),
    "health_rounds": (
        "counter",
        "Probe rounds of the cluster report behind the health endpoints and /metrics, by "
        "trigger (scheduled: the report expired; forced: a token holder asked).",
        "trigger",
    ),
    "digitalocean_api_requests": (
        "counter",
        "Requests sent to the DigitalOcean API and the cluster's metrics endpoints, by kind.",
        "kind",
    ),
    "replica_reads": ("counter", "Reads the router sent to a replica.", "alias"),
    "primary_fallback_reads": (
        "counter",
        "Reads sent to the primary instead, by reason.",
        "reason",
    ),
    "replica_read_retries": (
        "counter",
        "Requests re-run on the primary after a replica failed.",
        "alias",
    ),
    "replica_lag_seconds": ("gauge", "Replay lag of a replica, as last measured.", "alias"),
    "busy_responses": (
        "counter",
        "503s answered because the database or its pool was full (53300, a PgBouncer limit, "
        "PoolTimeout): load, not an outage.",
        "alias",
    ),
    "busy_errors": (
        "counter",
        "Connection attempts refused because the database or its pooler was full (53300, "
        "PgBouncer's limits, a pool's queue): load, not an outage.",
        "alias",
    ),
    "connect_slot_timeouts": (
        "counter",
        "Callers that found no connection attempt slot of this process within their deadline "
        "(connect_concurrency).",
        "alias",
    ),
    "webhooks_signature_failures": (
        "counter",
        "Webhook deliveries refused with 401 (bad, missing or unusable signature or secret).",
        "source",
    ),
    "webhooks_durable_ack_without_standby": (
        "counter",
        "Durable acks answered 200 while no standby was streaming (relaxed policy).",
        "source",
    ),
    "webhooks_in_flight_timeouts": (
        "counter",
        "Duplicate deliveries answered 503 because the first was still being processed.",
        "source",
    ),
    "webhooks_body_replays": (
        "counter",
        "Webhook bodies already stored for the source under another account or topic.",
        "source",
    ),
    "job_outage_retries": (
        "counter",
        "Background jobs sent back to the queue because the database was unavailable.",
        "task",
    ),
    "jobs_parked": (
        "counter",
        "Background jobs parked after their outage budget ran out (see the admin's parked jobs).",
        "task",
    ),
    "maintenance_responses": (
        "counter",
        "503s answered because of planned maintenance, by kind (html, json, webhook).",
        "kind",
    ),
}

#: How a gauge combines across processes under PROMETHEUS_MULTIPROC_DIR (gunicorn
#: workers): the breaker is open if it is open in any live worker.
GAUGE_MULTIPROCESS_MODE: dict[str, MultiprocessMode] = {"breaker_open": "livemax"}

_lock = threading.Lock()
_values: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
_prometheus: dict[str, Any] | None = None
#: Held while the Prometheus metrics are created: two threads bumping their
#: first counter at once must not both register (the second would fail).
_prometheus_lock = threading.Lock()


def _prometheus_metrics() -> dict[str, Any]:
    """Create the Prometheus metrics once, or an empty dict without prometheus_client."""
    global _prometheus
    made = _prometheus
    if made is not None:
        return made
    with _prometheus_lock:
        if _prometheus is None:
            _prometheus = _create_prometheus_metrics()
        return _prometheus


def create_prometheus_metrics() -> None:
    """Register every metric now, so /metrics lists them before their first event."""
    _prometheus_metrics()


def _create_prometheus_metrics() -> dict[str, Any]:
    try:
        import prometheus_client
    except ImportError:
        return {}
    registered = getattr(prometheus_client.REGISTRY, "_names_to_collectors", {})
    made: dict[str, Any] = {}
    for name, (kind, help_text, label) in METRICS.items():
        full_name = f"pg_resilience_{name}"
        if full_name in registered:  # registered by an earlier import (a reload in tests)
            made[name] = registered[full_name]
        elif kind == "counter":
            made[name] = prometheus_client.Counter(full_name, help_text, [label])
        else:
            mode = GAUGE_MULTIPROCESS_MODE.get(name, "livemax")
            made[name] = prometheus_client.Gauge(
                full_name, help_text, [label], multiprocess_mode=mode
            )
    return made


def _check(name: str) -> None:
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")


def increment(name: str, label: str, amount: float = 1) -> None:
    """Add ``amount`` to counter ``name`` for ``label`` (an alias or a source)."""
    _check(name)
    with _lock:
        _values[name][label] += amount
    metric = _prometheus_metrics().get(name)
    if metric is not None:
        metric.labels(label).inc(amount)


def set_gauge(name: str, label: str, value: float) -> None:
    """Set gauge ``name`` for ``label``."""
    _check(name)
    with _lock:
        _values[name][label] = value
    metric = _prometheus_metrics().get(name)
    if metric is not None:
        metric.labels(label).set(value)


def snapshot() -> dict[str, dict[str, float]]:
    """A copy of every value: ``{metric: {label: value}}``."""
    with _lock:
        return {name: dict(by_label) for name, by_label in _values.items() if by_label}


def reset() -> None:
    """Forget the in-process values (for tests; Prometheus counters never go back)."""
    with _lock:
        _values.clear()
