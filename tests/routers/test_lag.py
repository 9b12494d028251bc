"""Lag from the replica itself: an idle primary is no lag, a delayed replication link is."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import stats
from django_pg_resilience.routers import ReplicaRouter
from django_pg_resilience.routers.config import replica_monitor
from django_pg_resilience.testing import EndpointProxy, LocalCluster
from tests.routers.conftest import PRIMARY, REPLICA, measure, routed_aliases, wait_for
from tests.testapp.models import Item


@pytest.fixture
def cluster(
    lag_cluster: tuple[LocalCluster, EndpointProxy], link: EndpointProxy, django_db_blocker: Any
) -> Iterator[LocalCluster]:
    with django_db_blocker.unblock():
        yield lag_cluster[0]


@pytest.fixture
def steady_writes(cluster: LocalCluster) -> Iterator[None]:
    """A commit on the primary every few milliseconds, so replay has something to lag on."""
    stop = threading.Event()

    def write() -> None:
        with cluster.primary.connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS router_ticks (at timestamptz)")
            while not stop.wait(0.01):
                conn.execute("INSERT INTO router_ticks VALUES (now())")

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)


def test_an_idle_primary_does_not_make_the_replica_look_behind(
    cluster: LocalCluster, settings: SettingsWrapper
) -> None:
    with routed_aliases(cluster, settings, MAX_REPLICA_LAG=0.2):
        standby = cluster.standbys[0]
        Item.objects.using(PRIMARY).create(name="last-write")
        cluster.wait_for_replay(standby)

        def last_commit_is_old() -> bool:
            (age,) = standby.query(
                "SELECT EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())"
            )[0]
            return float(age) > 0.5

        wait_for(last_commit_is_old, what="the last replayed commit older than MAX_REPLICA_LAG")
        measure()
        status = replica_monitor().status(REPLICA)
        assert status is not None and status.lag == 0.0
        assert ReplicaRouter().db_for_read(Item) == REPLICA


def test_a_replica_behind_a_slow_link_lags_and_is_skipped(
    cluster: LocalCluster, link: EndpointProxy, settings: SettingsWrapper, steady_writes: None
) -> None:
    with routed_aliases(cluster, settings, MAX_REPLICA_LAG=0.15):
        link.delay(400)

        def lag_measured() -> bool:
            measure()
            status = replica_monitor().status(REPLICA)
            return status is not None and status.lag > 0.15

        wait_for(lag_measured, what="a lag above MAX_REPLICA_LAG")
        assert ReplicaRouter().db_for_read(Item) == PRIMARY
        assert stats.snapshot()["primary_fallback_reads"] == {"lag": 1}
        assert stats.snapshot()["replica_lag_seconds"][REPLICA] > 0.15


def test_a_replica_within_max_replica_lag_serves_reads(
    cluster: LocalCluster, link: EndpointProxy, settings: SettingsWrapper, steady_writes: None
) -> None:
    with routed_aliases(cluster, settings, MAX_REPLICA_LAG=5.0):
        link.delay(300)

        def lag_measured() -> bool:
            measure()
            status = replica_monitor().status(REPLICA)
            return status is not None and 0.2 < status.lag < 5.0

        wait_for(lag_measured, what="a measured lag of the link's delay")
        assert ReplicaRouter().db_for_read(Item) == REPLICA
        assert stats.snapshot()["replica_reads"] == {REPLICA: 1}


def test_writes_and_transactions_go_to_the_primary(
    cluster: LocalCluster, settings: SettingsWrapper
) -> None:
    with routed_aliases(cluster, settings):
        measure()
        router = ReplicaRouter()
        assert router.db_for_write(Item) == PRIMARY
        with transaction.atomic(using=PRIMARY):
            assert router.db_for_read(Item) == PRIMARY
        assert stats.snapshot()["primary_fallback_reads"] == {"transaction": 1}
        assert router.allow_migrate(REPLICA, "testapp") is False
        assert router.allow_migrate(PRIMARY, "testapp") is None
