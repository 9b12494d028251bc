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

The gauges' labels name things (hosts, standbys, replication slots, the
cluster UUID): a scrape that may not see them (``HEALTH_METRICS_NAMES``, see
:func:`.access.metrics_names_shown`) gets stable pseudonyms instead, the same
in every process of the site. Under ``PROMETHEUS_MULTIPROC_DIR`` the gauges are
files every scrape reads, so names are shown only with ``"always"``.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_started
from django.utils.crypto import salted_hmac

from django_pg_resilience import stats
from django_pg_resilience.conf import app_settings
from django_pg_resilience.health.access import (
    metrics_names_shown,
    token_matches,
    token_presented,
)
from django_pg_resilience.health.cache import CachedReport, cluster_report
from django_pg_resilience.health.render import all_prometheus_metrics, prometheus_samples
from django_pg_resilience.health.status import Status

__all__ = [
    "NAMING_LABELS",
    "ClusterCollector",
    "install",
    "pseudonym",
    "publish_multiprocess",
    "samples",
]

PREFIX = "pg_resilience_"
Sample = tuple[str, dict[str, str], float]
#: Labels whose values name something of the operator's: a member (an alias, a
#: NODES entry, a host), a standby, a replication slot, the provider's cluster
#: UUID or node host, a PgBouncer.
NAMING_LABELS = frozenset({"node", "group", "standby", "slot", "cluster", "pgbouncer"})
#: Whether the scrape being answered may see names (set per request, see _note_request).
_names_shown: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "pg_resilience_metrics_names", default=False
)


def pseudonym(name: str) -> str:
    """A stable stand-in for ``name``: the same in every process that shares SECRET_KEY
    (series stay continuous, alerts still fire per member), and no way back without it."""
    digest = salted_hmac("django_pg_resilience.metrics.pseudonym", name, algorithm="sha256")
    return "p" + digest.hexdigest()[:12]


def samples(cached: CachedReport, *, names: bool = False) -> list[Sample]:
    """The gauges of one cached report, named as ``manage.py health --format prometheus``
    names them (only the overall UNKNOWN without a current report). Without ``names``,
    the values of :data:`NAMING_LABELS` are pseudonyms."""
    report = cached.current
    if report is None:
        return [(f"{PREFIX}health_status", {}, float(Status.UNKNOWN))]
    return [
        (PREFIX + name, labels if names else _pseudonymised(labels), float(value))
        for name, labels, value in prometheus_samples(report)
    ]


def _pseudonymised(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: pseudonym(v) if k in NAMING_LABELS else v for k, v in labels.items()}


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
        return self._families(samples(_cached(), names=_names_shown.get()))

    @staticmethod
    def _families(values: list[Sample]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        by_name: dict[str, list[Sample]] = {}
        for sample in values:
            by_name.setdefault(sample[0], []).append(sample)
        for short_name, (_kind, help_text) in all_prometheus_metrics().items():
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
        request_started.connect(_note_request, dispatch_uid="pg_resilience_metrics")
        if not _multiprocess():
            REGISTRY.register(ClusterCollector())
        _installed = True


def _note_request(sender: Any, environ: Any = None, scope: Any = None, **kwargs: Any) -> None:
    """Before each request: may it see names on /metrics? (Under PROMETHEUS_MULTIPROC_DIR,
    a scrape also writes the gauges first.) Set for every request: a worker thread's
    context outlives the request that set it."""
    if environ is not None:
        path, header = environ.get("PATH_INFO"), _environ_header(environ)
    else:
        path, header = (scope or {}).get("path"), _scope_header(scope or {})
    try:
        wanted = app_settings().HEALTH_METRICS_PATH
    except ImproperlyConfigured:
        _names_shown.set(False)
        return
    if not wanted or path not in (wanted, wanted.rstrip("/") + "/"):
        _names_shown.set(False)
        return
    if _multiprocess():
        publish_multiprocess(_cached())
    else:
        _names_shown.set(metrics_names_shown(token_matches(token_presented(header))))


def _environ_header(environ: Mapping[str, Any]) -> Callable[[str], str | None]:
    def header(name: str) -> str | None:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        return None if value is None else str(value)

    return header


def _scope_header(scope: Mapping[str, Any]) -> Callable[[str], str | None]:
    def header(name: str) -> str | None:
        wanted = name.lower().encode("latin-1")
        for key, value in scope.get("headers") or ():
            if key.lower() == wanted:
                return bytes(value).decode("latin-1")
        return None

    return header


def publish_multiprocess(cached: CachedReport) -> None:
    """Write the gauges into this worker's multiprocess files (names only with
    ``HEALTH_METRICS_NAMES = "always"``: every scrape reads the files)."""
    from prometheus_client import Gauge

    names = metrics_names_shown(token_given=False)
    with _install_lock:
        for name, labels, value in samples(cached, names=names):
            gauge = _multiprocess_gauges.get(name)
            if gauge is None:
                help_text = all_prometheus_metrics()[name.removeprefix(PREFIX)][1]
                gauge = Gauge(name, help_text, list(labels), multiprocess_mode="mostrecent")
                _multiprocess_gauges[name] = gauge
            (gauge.labels(**labels) if labels else gauge).set(value)
