"""The cluster report on the app's own ``/metrics``, for Prometheus.

Two ways in, chosen by :func:`install` (called when the app starts):

* One process (``prometheus_client``'s default registry, the usual
  ``generate_latest()`` view or django-prometheus' one): a collector on the
  default registry turns the cached cluster report into gauges at each scrape.
* Several processes (``PROMETHEUS_MULTIPROC_DIR``, gunicorn workers): the
  metrics view reads the workers' files only, so collectors are never asked.
  Instead, a request to ``PG_RESILIENCE['HEALTH_METRICS_PATH']`` first writes
  the cached report into multiprocess gauges (``mostrecent``: the worker that
  answered the scrape wrote last), then the view reads them.

Either way the report comes from :mod:`.cache`: at most one probe round per
``HEALTH_CACHE_SECONDS`` per process, whatever the number of scrapers. The
package's own counters (:mod:`django_pg_resilience.stats`) are created at
install time too, so they are on ``/metrics`` before the first event.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_started

from django_pg_resilience import stats
from django_pg_resilience.conf import app_settings
from django_pg_resilience.health.cache import CachedReport, cluster_report
from django_pg_resilience.health.render import PROMETHEUS_METRICS, prometheus_samples
from django_pg_resilience.health.status import Status

__all__ = ["ClusterCollector", "install", "publish_multiprocess", "samples"]

PREFIX = "pg_resilience_"
Sample = tuple[str, dict[str, str], float]


def samples(cached: CachedReport) -> list[Sample]:
    """The gauges of one cached report, named as ``manage.py health --format prometheus``
    names them (only the overall UNKNOWN before the first round ends)."""
    if cached.report is None:
        return [(f"{PREFIX}health_status", {}, float(Status.UNKNOWN))]
    return [
        (PREFIX + name, labels, float(value))
        for name, labels, value in prometheus_samples(cached.report)
    ]


def _cached() -> CachedReport:
    try:
        return cluster_report()
    except ImproperlyConfigured as exc:
        return CachedReport(None, str(exc))


class ClusterCollector:
    """A ``prometheus_client`` collector of the cluster gauges (one process)."""

    def describe(self) -> list[Any]:
        # Registering calls describe(), not collect(): no probe at start-up.
        return list(self._families([]))

    def collect(self) -> Iterator[Any]:
        return self._families(samples(_cached()))

    @staticmethod
    def _families(values: list[Sample]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        by_name: dict[str, list[Sample]] = {}
        for sample in values:
            by_name.setdefault(sample[0], []).append(sample)
        for short_name, (_kind, help_text) in PROMETHEUS_METRICS.items():
            found = by_name.get(PREFIX + short_name, [])
            label_names = list(found[0][1]) if found else []
            family = GaugeMetricFamily(PREFIX + short_name, help_text, labels=label_names)
            for _name, labels, value in found:
                family.add_metric([labels[key] for key in label_names], value)
            yield family


_install_lock = threading.Lock()
_installed = False
_multiprocess_gauges: dict[str, Any] = {}


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def install() -> None:
    """Put the cluster gauges and the package's counters on /metrics (once; no-op without
    prometheus_client)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        try:
            from prometheus_client import REGISTRY
        except ImportError:
            _installed = True
            return
        stats.create_prometheus_metrics()
        if _multiprocess():
            request_started.connect(_refresh_before_scrape, dispatch_uid="pg_resilience_metrics")
        else:
            REGISTRY.register(ClusterCollector())
        _installed = True


def _refresh_before_scrape(
    sender: Any, environ: Any = None, scope: Any = None, **kwargs: Any
) -> None:
    path = (environ or {}).get("PATH_INFO") if environ is not None else (scope or {}).get("path")
    try:
        wanted = app_settings().HEALTH_METRICS_PATH
    except ImproperlyConfigured:
        return
    if wanted and (path == wanted or path == wanted.rstrip("/") + "/"):
        publish_multiprocess(_cached())


def publish_multiprocess(cached: CachedReport) -> None:
    """Write the gauges into this worker's multiprocess files."""
    from prometheus_client import Gauge

    with _install_lock:
        for name, labels, value in samples(cached):
            gauge = _multiprocess_gauges.get(name)
            if gauge is None:
                help_text = PROMETHEUS_METRICS[name.removeprefix(PREFIX)][1]
                gauge = Gauge(name, help_text, list(labels), multiprocess_mode="mostrecent")
                _multiprocess_gauges[name] = gauge
            (gauge.labels(**labels) if labels else gauge).set(value)
