"""The database cluster's checks on django-health-check's page, JSON and feeds.

django-health-check 4.x lists its checks in the URLconf::

    from health_check.views import HealthCheckView
    from django_pg_resilience.contrib.health_check import CLUSTER_CHECKS

    path("ht/", HealthCheckView.as_view(checks=[
        "health_check.checks.Cache",
        *CLUSTER_CHECKS,
    ]))

Each check reads the process's cached cluster report (the one behind
``/healthz/cluster`` and ``/metrics``): any number of health-check requests
cost at most one probe round per ``HEALTH_CACHE_SECONDS``. A WARNING raises
django-health-check's ``ServiceWarning``, CRITICAL and UNKNOWN its
``ServiceUnavailable``; both make its page answer 500.

django-health-check 3.24+ (the line for Django 4.2) registers plugins instead:
add ``"django_pg_resilience.contrib.health_check"`` to ``INSTALLED_APPS`` and its
``ready()`` registers both :data:`CLUSTER_CHECKS`.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from health_check.exceptions import ServiceUnavailable, ServiceWarning

from django_pg_resilience.health.cache import cluster_report, round_wait
from django_pg_resilience.health.report import HealthReport
from django_pg_resilience.health.status import Status, worst

__all__ = ["CLUSTER_CHECKS", "LEGACY_PLUGINS", "ClusterHealth"]

try:
    from health_check.base import HealthCheck as _Base

    #: True with django-health-check 3.x, whose checks are registered plugins.
    LEGACY_PLUGINS = False
except ImportError:
    from health_check.backends import HealthCheck as _Base  # type: ignore[no-redef,unused-ignore]

    LEGACY_PLUGINS = True


@dataclasses.dataclass
class ClusterHealth(_Base):
    """The cluster's overall status, or one named check of ``manage.py health``.

    ``check`` names a check of the health report (``"reachable"``,
    ``"replication_lag"``, ``"standbys"``, ``"digitalocean"``,
    ``"pgbouncer_waiting"``, ...); None means every check. ``detail=True``
    shows the report's summary (node names, hosts, lag) in the message: only
    where django-health-check's page is not public.
    """

    check: str | None = None
    detail: bool = dataclasses.field(default=False, repr=False)

    timeout = datetime.timedelta(seconds=5)

    def run(self) -> None:
        cached = cluster_report(wait=min(round_wait(), self.timeout.total_seconds() - 0.5))
        if cached.current is None:  # none yet, or older than HEALTH_MAX_REPORT_AGE
            raise ServiceUnavailable(cached.why_unknown)
        status, summary = self._verdict(cached.current)
        if status is Status.OK:
            return
        message = summary if self.detail else f"{status.name} (see manage.py health)"
        if status is Status.WARNING:
            raise ServiceWarning(message)
        raise ServiceUnavailable(message)

    def check_status(self, subset: Any = None) -> None:
        """django-health-check 3.x's entry point."""
        self.run()

    def _verdict(self, report: HealthReport) -> tuple[Status, str]:
        if self.check is None:
            return report.status, report.summary()
        found = [
            (name, check)
            for name, check in [
                *((node.target.name, c) for node in report.nodes for c in node.checks),
                *((None, c) for c in report.checks),
            ]
            if check.name == self.check
        ]
        if not found:
            return Status.UNKNOWN, f"the health report has no {self.check!r} check"
        status = worst(check.status for _, check in found)
        problems = [
            f"{name + ': ' if name else ''}{check.message}"
            for name, check in found
            if check.status is not Status.OK
        ]
        return status, "; ".join(problems)


#: The checks to add to ``HealthCheckView.as_view(checks=[...])``: the cluster as a
#: whole, and whether every node answers.
CLUSTER_CHECKS: tuple[str | tuple[str, dict[str, str]], ...] = (
    "django_pg_resilience.contrib.health_check.ClusterHealth",
    ("django_pg_resilience.contrib.health_check.ClusterHealth", {"check": "reachable"}),
)


def register_legacy_plugins() -> None:
    """Register :data:`CLUSTER_CHECKS` with django-health-check 3.x's plugin directory."""
    from health_check.plugins import plugin_dir

    for entry in CLUSTER_CHECKS:
        options = entry[1] if isinstance(entry, tuple) else {}
        plugin_dir.register(ClusterHealth, **options)
