"""Read replicas without stale reads: a lag-aware, failover-aware router with read-your-writes.

::

    DATABASE_ROUTERS = ["django_pg_resilience.routers.ReplicaRouter"]
    MIDDLEWARE = [..., "django_pg_resilience.routers.ReplicaRouterMiddleware", ...]

See :mod:`.router` for where a read goes, :mod:`.middleware` for
read-your-writes across requests, :mod:`.monitor` for how lag is measured.
"""

from __future__ import annotations

from django_pg_resilience.routers.context import use_primary
from django_pg_resilience.routers.middleware import ReplicaRouterMiddleware
from django_pg_resilience.routers.router import ReplicaRouter

__all__ = ["ReplicaRouter", "ReplicaRouterMiddleware", "use_primary"]
