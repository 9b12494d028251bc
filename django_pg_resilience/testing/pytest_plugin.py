"""pytest fixtures for testing through real failovers (installed with the package).

* ``pg_cluster`` (session): a primary and one streaming standby.
* ``pg_session_endpoint`` (session): an :class:`EndpointProxy` in front of
  ``pg_cluster``'s primary: point Django's DATABASES at it once.
* ``pg_endpoint`` (function): the same proxy; after the test every fault is
  lifted and it points at the primary again.
* ``pg_fresh_cluster`` (function): a new primary + standby with its own
  endpoint (``cluster.endpoint``), for a test that kills, promotes or rewinds.
  Closed after the test, whatever happened.

The plugin only creates servers when a test asks for one of these fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_pg_resilience.testing.cluster import LocalCluster
from django_pg_resilience.testing.proxy import EndpointProxy


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalCluster]:
    """A primary and one streaming standby for the whole test session. Do not break it."""
    with LocalCluster(standbys=1) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_session_endpoint(pg_cluster: LocalCluster) -> Iterator[EndpointProxy]:
    """The session's endpoint proxy, in front of ``pg_cluster``'s primary."""
    with EndpointProxy(pg_cluster.primary) as endpoint:
        yield endpoint


@pytest.fixture
def pg_endpoint(
    pg_session_endpoint: EndpointProxy, pg_cluster: LocalCluster
) -> Iterator[EndpointProxy]:
    """The session's endpoint, restored after the test (no blackhole, no delay, on the primary)."""
    yield pg_session_endpoint
    pg_session_endpoint.restore()
    primary = pg_cluster.primary
    if pg_session_endpoint.target != (primary.host, primary.port):
        pg_session_endpoint.point_to(primary)


@pytest.fixture
def pg_fresh_cluster() -> Iterator[LocalCluster]:
    """A cluster of the test's own, with ``cluster.endpoint`` in front of its primary."""
    with LocalCluster(standbys=1) as cluster:
        yield cluster
