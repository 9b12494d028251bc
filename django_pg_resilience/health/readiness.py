"""Readiness of this process: may a load balancer send it requests?

A web process is ready when it has started, its settings and migration files
are sane and it is not shutting down. The database's state is *reported*
(from the cached cluster report) but does not make the process unready unless
the operator names the checks to enforce in ``PG_RESILIENCE['READINESS_ENFORCE']``:
during a database outage every process would fail the same check at once, the
balancer would take the whole fleet out, and users would get its bare error
instead of the calm 503 page these processes exist to serve.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterable
from pathlib import Path

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from django_pg_resilience import conf
from django_pg_resilience.health.cache import CachedReport
from django_pg_resilience.health.evaluate import Check
from django_pg_resilience.health.providers import registered
from django_pg_resilience.health.report import HealthReport
from django_pg_resilience.health.status import Status, worst

__all__ = [
    "CLUSTER",
    "ENFORCEABLE_CHECKS",
    "begin_shutdown",
    "enforceable_checks",
    "enforced_checks",
    "process_checks",
    "unknown_enforced_names",
]

#: The name that enforces the cluster's overall status.
CLUSTER = "cluster"
#: The nodes' checks an operator may enforce (the names ``manage.py health`` uses); the
#: providers add theirs (:func:`enforceable_checks`).
ENFORCEABLE_CHECKS = frozenset(
    {
        CLUSTER,
        "reachable",
        "role",
        "connections",
        "oldest_transaction",
        "standbys_streaming",
        "replication_lag",
        "replication_slot",
        "wal_receiver",
        "replay_delay",
        "replay_paused",
        "circuit_breaker",
        "queries",
        "primary",
    }
)
_FAILING = (Status.CRITICAL, Status.UNKNOWN)
_shutting_down = threading.Event()


def begin_shutdown() -> None:
    """Make this process unready from now on (call it from a SIGTERM handler or a server hook)."""
    _shutting_down.set()


def _started() -> Check:
    if apps.ready:
        return Check("started", Status.OK, "the app registry is ready")
    return Check("started", Status.CRITICAL, "the app registry is still loading")


def _settings() -> Check:
    errors = conf.settings_errors()
    if not errors:
        return Check("settings", Status.OK, "the package's settings are valid")
    return Check(
        "settings",
        Status.CRITICAL,
        errors[0],
        hint="Run manage.py check: it lists every setting to fix.",
    )


@functools.lru_cache(maxsize=1)
def _migrations() -> Check:
    """The migration files form one consistent graph (read from disk once: they do not change)."""
    from django.db.migrations.loader import MigrationLoader

    try:
        conflicts = MigrationLoader(None, ignore_no_migrations=True).detect_conflicts()
    except Exception as exc:  # a missing dependency, a bad migration module
        return Check(
            "migrations",
            Status.CRITICAL,
            f"the migration files do not load: {exc.__class__.__name__}: {exc}",
            hint="Run manage.py showmigrations to see which migration is broken.",
        )
    if conflicts:
        names = ", ".join(sorted(conflicts))
        return Check(
            "migrations",
            Status.CRITICAL,
            f"conflicting migrations (more than one leaf) in: {names}",
            hint="Run manage.py makemigrations --merge and deploy again.",
        )
    return Check("migrations", Status.OK, "the migration files form one graph")


def _draining() -> Check:
    drain_file = conf.app_settings().READINESS_DRAIN_FILE
    if _shutting_down.is_set():
        return Check("shutting_down", Status.CRITICAL, "this process is shutting down")
    if drain_file and Path(drain_file).exists():
        return Check(
            "shutting_down",
            Status.CRITICAL,
            "draining: READINESS_DRAIN_FILE exists",
            hint=f"Remove {drain_file} to take requests again.",
        )
    return Check("shutting_down", Status.OK, "not shutting down")


def process_checks() -> list[Check]:
    """This process's own readiness: started, settings, migration files, not draining."""
    checks = [_started(), _settings(), _migrations()]
    with contextlib.suppress(ImproperlyConfigured):  # reported by the settings check
        checks.append(_draining())
    return checks


def enforceable_checks() -> frozenset[str]:
    """The names READINESS_ENFORCE may use: the nodes' checks and every provider's."""
    return ENFORCEABLE_CHECKS | {name for p in registered() for name in p.check_names}


def unknown_enforced_names(names: Iterable[str]) -> list[str]:
    return sorted(set(names) - enforceable_checks())


def enforced_checks(names: Iterable[str], cached: CachedReport) -> list[Check]:
    """One check per enforced name: CRITICAL when the cluster fails it, UNKNOWN when it
    cannot tell (no report yet, or one older than HEALTH_MAX_REPORT_AGE: fail closed)."""
    report = cached.current
    result = []
    for name in sorted(set(names)):
        if report is None:
            result.append(Check(f"enforced:{name}", Status.UNKNOWN, cached.why_unknown))
            continue
        status = _status_of(report, name)
        message = f"cluster check {name!r} is {status.name}"
        result.append(Check(f"enforced:{name}", status, message))
    return result


def _status_of(report: HealthReport, name: str) -> Status:
    if name == CLUSTER:
        return report.status
    found = [check.status for node in report.nodes for check in node.checks if check.name == name]
    found += [check.status for check in report.checks if check.name == name]
    status = worst(found)
    return status if status in _FAILING else Status.OK
