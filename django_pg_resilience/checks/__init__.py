"""System checks. Ids are stable: ``pg_resilience.E0xx`` errors, ``W0xx`` warnings.

| id | what |
|----|------|
| E002 | a setting of the package has a wrong name or type |

Each concern has its module in this package; every message says how
to fix the problem.
"""

from __future__ import annotations

from django_pg_resilience.checks.backend import (
    check_backend_settings,
    check_libpq_version,
    libpq_too_old,
)
from django_pg_resilience.checks.health import check_health, check_node_metrics_and_pgbouncers
from django_pg_resilience.checks.maintenance import check_maintenance
from django_pg_resilience.checks.middleware import check_unavailable_middleware
from django_pg_resilience.checks.routers import check_replica_router
from django_pg_resilience.checks.settings import check_settings
from django_pg_resilience.checks.webhooks import check_webhook_views

__all__ = [
    "check_backend_settings",
    "check_health",
    "check_libpq_version",
    "check_maintenance",
    "check_node_metrics_and_pgbouncers",
    "check_replica_router",
    "check_settings",
    "check_unavailable_middleware",
    "check_webhook_views",
    "libpq_too_old",
]
