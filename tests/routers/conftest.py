"""Fixtures of the router tests: a primary, a standby streaming through a delaying
proxy (a lagging replica on demand), and the two as Django aliases."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import stats
from django_pg_resilience.backend.alias import reset as reset_alias_states
from django_pg_resilience.routers.config import replica_monitor, reset_replica_monitor
from django_pg_resilience.testing import EndpointProxy, LocalCluster
from django_pg_resilience.testing.django import database_alias
from tests.testapp.models import Item

PRIMARY = "router_primary"
REPLICA = "router_replica"
ROUTER = "django_pg_resilience.routers.ReplicaRouter"
MIDDLEWARE = "django_pg_resilience.routers.ReplicaRouterMiddleware"
#: A replica alias gives up at once: the primary is there to fall back to.
REPLICA_RESILIENCE = {"read_write": False, "deadline": 0.3, "max_attempts": 1}


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout} s")
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    reset_alias_states()
    stats.reset()
    yield
    reset_replica_monitor()
    reset_alias_states()


@pytest.fixture(scope="module")
def lag_cluster() -> Iterator[tuple[LocalCluster, EndpointProxy]]:
    """A primary and a standby whose replication link is a proxy (``link.delay(ms)``)."""
    with LocalCluster(standbys=1) as cluster, EndpointProxy(cluster.primary) as link:
        cluster.replicate_through(cluster.standbys[0], link)
        yield cluster, link


@pytest.fixture
def link(lag_cluster: tuple[LocalCluster, EndpointProxy]) -> Iterator[EndpointProxy]:
    cluster, proxy = lag_cluster
    yield proxy
    proxy.restore()
    cluster.wait_for_replay(cluster.standbys[0])


@contextlib.contextmanager
def routed_aliases(
    cluster: LocalCluster, settings: SettingsWrapper, **app_settings: Any
) -> Iterator[None]:
    """PRIMARY and REPLICA aliases on ``cluster``, the router installed, the Item table made."""
    standby = cluster.standbys[0]
    with (
        database_alias(PRIMARY, cluster.primary),
        database_alias(REPLICA, standby, OPTIONS={"resilience": dict(REPLICA_RESILIENCE)}),
    ):
        with connections[PRIMARY].schema_editor() as editor:
            editor.create_model(Item)
        cluster.wait_for_replay(standby)
        settings.DATABASE_ROUTERS = [ROUTER]
        settings.PG_RESILIENCE = {
            "REPLICA_PRIMARY": PRIMARY,
            "REPLICA_ALIASES": [REPLICA],
            # The tests measure when they want to (monitor.refresh()).
            "REPLICA_CHECK_INTERVAL": 30.0,
            **app_settings,
        }
        try:
            yield
        finally:
            reset_replica_monitor()
            with connections[PRIMARY].schema_editor() as editor:
                editor.delete_model(Item)


def measure() -> None:
    """Measure the replicas now, in this thread."""
    replica_monitor().refresh()
