"""Test a Django app through a real PostgreSQL failover, on one machine.

* :class:`LocalCluster`: a real primary + streaming standbys from the machine's
  PostgreSQL binaries, with kill / stop / promote / rejoin.
* :class:`EndpointProxy`: the managed database's endpoint, to move, cut, slow
  or blackhole.
* :class:`PgBouncer`: a transaction-pooling PgBouncer in front of an endpoint,
  the way managed connection pools work.
* :class:`NetworkNamespace`: a peer of the test's own that can go silent
  (nothing comes back, not even an ACK); ``LocalCluster(netns=True)`` runs the
  primary in one.
* A pytest plugin (installed with the package) with the fixtures
  ``pg_cluster``, ``pg_endpoint``, ``pg_fresh_cluster`` and ``pg_netns_cluster``.
"""

from __future__ import annotations

from django_pg_resilience.testing.cluster import (
    LocalCluster,
    Node,
    PostgresNotFound,
    find_bindir,
    free_port,
)
from django_pg_resilience.testing.netns import (
    NetworkNamespace,
    netns_available,
    netns_unavailable_reason,
)
from django_pg_resilience.testing.pgbouncer import PgBouncer
from django_pg_resilience.testing.proxy import EndpointProxy
from django_pg_resilience.testing.state import reset_process_state

__all__ = [
    "EndpointProxy",
    "LocalCluster",
    "NetworkNamespace",
    "Node",
    "PgBouncer",
    "PostgresNotFound",
    "find_bindir",
    "free_port",
    "netns_available",
    "netns_unavailable_reason",
    "reset_process_state",
]
