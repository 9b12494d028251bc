"""The lag probe measures the replicas in parallel: a silent one does not hold the others."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience.routers.config import replica_monitor
from django_pg_resilience.testing import EndpointProxy, LocalCluster
from django_pg_resilience.testing.django import database_alias
from tests.routers.conftest import REPLICA, REPLICA_RESILIENCE, routed_aliases

SILENT = "router_silent_replica"


@pytest.fixture
def cluster(
    lag_cluster: tuple[LocalCluster, EndpointProxy], django_db_blocker: Any
) -> Iterator[LocalCluster]:
    with django_db_blocker.unblock():
        yield lag_cluster[0]


def test_a_silent_replica_does_not_leave_a_healthy_one_unmeasured(
    cluster: LocalCluster, settings: SettingsWrapper
) -> None:
    standby = cluster.standbys[0]
    with (
        EndpointProxy(standby) as silent,
        database_alias(SILENT, silent, OPTIONS={"resilience": dict(REPLICA_RESILIENCE)}),
        # The silent replica first: measured one after the other, it would go first.
        routed_aliases(cluster, settings, REPLICA_ALIASES=[SILENT, REPLICA]),
    ):
        silent.blackhole()  # accepts the connection, never answers: a hung server
        monitor = replica_monitor()
        refresh = threading.Thread(target=monitor.refresh, daemon=True)
        refresh.start()
        # Poll with a deadline: the healthy replica's measurement arrives while the
        # silent one is still waiting for its connect timeout.
        deadline = time.monotonic() + 30
        while REPLICA not in monitor._statuses and time.monotonic() < deadline:
            time.sleep(0.01)
        measured = dict(monitor._statuses)
        refresh.join(60)
        assert not refresh.is_alive(), "the refresh never ended: the silent replica is unbounded"
    healthy = measured.get(REPLICA)
    assert healthy is not None and healthy.error is None and healthy.in_recovery
    assert SILENT not in measured, "the healthy replica was measured only after the silent one"
    # The silent one was measured too, in the end: as unreachable.
    final = monitor._statuses[SILENT]
    assert final.error is not None
