"""Cluster health: probes, thresholds and reports behind ``manage.py health`` and ``readyz``.

::

    from django_pg_resilience.health import run_checks, render

    report = run_checks()            # every alias on the backend + PG_RESILIENCE["NODES"]
    report.status                    # Status.OK / WARNING / CRITICAL / UNKNOWN (int: exit code)
    print(render(report, "json"))
"""

from __future__ import annotations

from django_pg_resilience.health.evaluate import Check, Thresholds
from django_pg_resilience.health.render import FORMATS, render
from django_pg_resilience.health.report import SCHEMA_VERSION, HealthReport, run_checks
from django_pg_resilience.health.status import Status

__all__ = [
    "FORMATS",
    "SCHEMA_VERSION",
    "Check",
    "HealthReport",
    "Status",
    "Thresholds",
    "render",
    "run_checks",
]
