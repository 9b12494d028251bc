"""A dead replica costs no request an error or a wait; a promoted one gets no reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import signals, stats
from django_pg_resilience.backend.alias import alias_state
from django_pg_resilience.routers import ReplicaRouter
from django_pg_resilience.routers.config import replica_monitor
from django_pg_resilience.testing import LocalCluster
from tests.routers.conftest import MIDDLEWARE, PRIMARY, REPLICA, measure, routed_aliases
from tests.testapp.models import Item


@pytest.fixture
def cluster(pg_fresh_cluster: LocalCluster, django_db_blocker: Any) -> Iterator[LocalCluster]:
    with django_db_blocker.unblock():
        yield pg_fresh_cluster


@pytest.fixture
def site(settings: SettingsWrapper) -> SettingsWrapper:
    settings.ROOT_URLCONF = "tests.routers.urls"
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, MIDDLEWARE]
    return settings


def test_a_replica_that_dies_under_a_request_costs_it_no_error(
    cluster: LocalCluster, site: SettingsWrapper
) -> None:
    with routed_aliases(cluster, site):
        Item.objects.using(PRIMARY).create(name="there")
        cluster.wait_for_replay(cluster.standbys[0])
        measure()  # the replica was fine when last measured ...
        cluster.kill(cluster.standbys[0])  # ... and dies before the next probe

        client = Client()
        first = client.get("/items/there/")
        assert first.status_code == 200
        assert first["X-Read-From"] == PRIMARY
        assert stats.snapshot()["replica_read_retries"] == {REPLICA: 1}

        # Every later read skips it at once, without touching it.
        attempts = stats.snapshot()["connect_attempts"].get(REPLICA, 0)
        for _ in range(5):
            response = client.get("/items/there/")
            assert response.status_code == 200
            assert response["X-Read-From"] == PRIMARY
        assert stats.snapshot()["connect_attempts"].get(REPLICA, 0) == attempts
        assert stats.snapshot()["primary_fallback_reads"]["down"] == 5


def test_a_dead_replica_is_found_by_the_probe_and_skipped(
    cluster: LocalCluster, settings: SettingsWrapper
) -> None:
    with routed_aliases(cluster, settings):
        measure()
        assert ReplicaRouter().db_for_read(Item) == REPLICA
        cluster.kill(cluster.standbys[0])
        measure()
        status = replica_monitor().status(REPLICA)
        assert status is not None and status.error is not None
        assert alias_state(REPLICA).breaker.state != "closed"
        attempts = stats.snapshot()["connect_attempts"].get(REPLICA, 0)
        assert ReplicaRouter().db_for_read(Item) == PRIMARY
        # Skipped without a connection attempt: nothing to wait for.
        assert stats.snapshot()["connect_attempts"].get(REPLICA, 0) == attempts
        assert stats.snapshot()["primary_fallback_reads"] == {"down": 1}

        # Back again: the probe reconnects through the breaker and closes it.
        cluster.start(cluster.standbys[0])
        measure()
        assert alias_state(REPLICA).breaker.state == "closed"
        assert ReplicaRouter().db_for_read(Item) == REPLICA


def test_a_promoted_replica_is_noticed_and_gets_no_reads(
    cluster: LocalCluster, settings: SettingsWrapper
) -> None:
    promoted: list[str] = []

    def on_promoted(alias: str, **kwargs: Any) -> None:
        promoted.append(alias)

    signals.replica_promoted.connect(on_promoted)
    try:
        with routed_aliases(cluster, settings):
            measure()
            assert ReplicaRouter().db_for_read(Item) == REPLICA
            cluster.promote(cluster.standbys[0])
            measure()
            measure()
            status = replica_monitor().status(REPLICA)
            assert status is not None and status.promoted
            assert ReplicaRouter().db_for_read(Item) == PRIMARY
            assert stats.snapshot()["primary_fallback_reads"] == {"promoted": 1}
    finally:
        signals.replica_promoted.disconnect(on_promoted)
    assert promoted == [REPLICA]
