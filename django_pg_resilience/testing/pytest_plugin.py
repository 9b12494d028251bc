"""pytest fixtures for testing through real failovers (installed with the package).

* ``pg_cluster`` (session): a primary and one streaming standby.
* ``pg_session_endpoint`` (session): an :class:`EndpointProxy` in front of
  ``pg_cluster``'s primary: point Django's DATABASES at it once.
* ``pg_endpoint`` (function): the same proxy; after the test every fault is
  lifted and it points at the primary again.
* ``pg_fresh_cluster`` (function): a new primary + standby with its own
  endpoint (``cluster.endpoint``), for a test that kills, promotes or rewinds.
  Closed after the test, whatever happened.
* ``pg_netns_cluster`` (function): like ``pg_fresh_cluster``, with the primary
  in a network namespace of its own (``LocalCluster(netns=True)``):
  ``cluster.namespace.silence()`` makes it a peer that sends nothing at all.
  Skipped, with the reason, where this process cannot create namespaces.

The plugin only creates servers when a test asks for one of these fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_pg_resilience.testing.cluster import LocalCluster
from django_pg_resilience.testing.netns import netns_unavailable_reason
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


@pytest.fixture
def pg_netns_cluster() -> Iterator[LocalCluster]:
    """A primary in its own network namespace and a standby streaming from it, for the test."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no network namespace for a silent peer: {reason}")
    with LocalCluster(standbys=1, netns=True) as cluster:
        yield cluster
