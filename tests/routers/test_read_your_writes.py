"""Read-your-writes by position, against a replica made to lag on purpose (a delayed link)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.db import connections
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import signals, stats
from django_pg_resilience.testing import EndpointProxy, LocalCluster
from tests.routers.conftest import MIDDLEWARE, PRIMARY, REPLICA, measure, routed_aliases, wait_for

LINK_DELAY_MS = 400


@pytest.fixture
def cluster(
    lag_cluster: tuple[LocalCluster, EndpointProxy], link: EndpointProxy, django_db_blocker: Any
) -> Iterator[LocalCluster]:
    with django_db_blocker.unblock():
        yield lag_cluster[0]


SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"


@pytest.fixture
def site(settings: SettingsWrapper) -> SettingsWrapper:
    """The test views, the middleware before SessionMiddleware (the cookie's place)."""
    settings.ROOT_URLCONF = "tests.routers.urls"
    settings.MIDDLEWARE = [MIDDLEWARE, *settings.MIDDLEWARE]
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    return settings


@contextlib.contextmanager
def session_table(cluster: LocalCluster) -> Iterator[None]:
    with connections[PRIMARY].schema_editor() as editor:
        editor.create_model(Session)
    try:
        yield
    finally:
        cluster.wait_for_replay(cluster.standbys[0])
        with connections[PRIMARY].schema_editor() as editor:
            editor.delete_model(Session)


def _replica_has(cluster: LocalCluster, name: str) -> bool:
    rows = cluster.standbys[0].query("SELECT 1 FROM testapp_item WHERE name = %s", [name])
    return bool(rows)


def test_a_client_reads_its_own_write_at_once_while_others_read_the_lagging_replica(
    cluster: LocalCluster, link: EndpointProxy, site: SettingsWrapper
) -> None:
    with routed_aliases(cluster, site, MAX_REPLICA_LAG=30.0):
        measure()
        link.delay(LINK_DELAY_MS)
        customer, other = Client(), Client()

        assert customer.post("/items/", {"name": "order-1"}).status_code == 201
        cookie = customer.cookies["pg_resilience_wal"]
        assert "/" not in cookie.value, "the WAL position (an LSN has a /) is there to read"
        assert cookie["samesite"] == "Lax" and cookie["httponly"]
        mine = customer.get("/items/order-1/")
        theirs = other.get("/items/order-1/")

        assert mine.status_code == 200, "the customer's own order must be there"
        assert mine["X-Read-From"] == PRIMARY
        # The other client is not pinned: it reads the replica, which lags
        # behind the link (proof that a replica read would have been stale).
        assert theirs.status_code == 404
        assert stats.snapshot()["replica_reads"] == {REPLICA: 1}
        assert stats.snapshot()["primary_fallback_reads"]["read_your_writes"] >= 1

        # Once the replica replayed past the customer's write, it serves them too.
        wait_for(lambda: _replica_has(cluster, "order-1"), what="the replica replaying the write")
        measure()
        again = customer.get("/items/order-1/")
        assert again.status_code == 200
        assert again["X-Read-From"] == REPLICA


def test_within_a_request_reads_after_a_write_see_it(
    cluster: LocalCluster, link: EndpointProxy, site: SettingsWrapper
) -> None:
    from django_pg_resilience.routers import ReplicaRouter
    from django_pg_resilience.routers.context import RoutingState, routing_state
    from tests.testapp.models import Item

    with routed_aliases(cluster, site, MAX_REPLICA_LAG=30.0, READ_YOUR_WRITES="request"):
        measure()
        link.delay(LINK_DELAY_MS)
        with routing_state(RoutingState()) as state:
            assert ReplicaRouter().db_for_read(Item) == REPLICA
            Item.objects.create(name="in-request")
            assert Item.objects.filter(name="in-request").exists()
            assert state.required_position is not None
        assert not _replica_has(cluster, "in-request")


def test_a_forged_or_tampered_position_is_ignored(
    cluster: LocalCluster, site: SettingsWrapper
) -> None:
    with routed_aliases(cluster, site):
        measure()
        client = Client()
        client.cookies["pg_resilience_wal"] = "FFFFFFFF/FFFFFFFF"  # unsigned
        response = client.get("/items/absent/")
        assert response.status_code == 404
        assert stats.snapshot()["replica_reads"] == {REPLICA: 1}


def test_the_cookie_is_secure_when_the_sites_cookies_are_even_over_http(
    cluster: LocalCluster, site: SettingsWrapper
) -> None:
    site.SESSION_COOKIE_SECURE = True  # https ends at a proxy: Django sees http
    with routed_aliases(cluster, site):
        measure()
        customer = Client()
        assert customer.post("/items/", {"name": "order-secure"}).status_code == 201
        assert customer.cookies["pg_resilience_wal"]["secure"]


def test_the_position_can_live_in_the_session(
    cluster: LocalCluster, link: EndpointProxy, site: SettingsWrapper
) -> None:
    site.MIDDLEWARE = [m for m in site.MIDDLEWARE if m != MIDDLEWARE]
    site.MIDDLEWARE.insert(site.MIDDLEWARE.index(SESSIONS) + 1, MIDDLEWARE)
    with (
        routed_aliases(cluster, site, MAX_REPLICA_LAG=30.0, READ_YOUR_WRITES="session"),
        session_table(cluster),
    ):
        measure()
        link.delay(LINK_DELAY_MS)
        customer = Client()
        # The session row is written on the primary with the position in it.
        assert customer.post("/items/", {"name": "order-s"}).status_code == 201
        assert "pg_resilience_wal" not in customer.cookies
        mine = customer.get("/items/order-s/")
        assert mine.status_code == 200
        assert mine["X-Read-From"] == PRIMARY
        link.restore()


def test_a_session_saved_by_a_request_is_read_back_by_the_next(
    cluster: LocalCluster, link: EndpointProxy, site: SettingsWrapper
) -> None:
    with routed_aliases(cluster, site, MAX_REPLICA_LAG=30.0), session_table(cluster):
        measure()
        link.delay(LINK_DELAY_MS)
        visitor = Client()
        # The only write of the request is the session, saved after the view.
        assert visitor.post("/notes/", {"note": "remember me"}).status_code == 200
        recalled = visitor.get("/notes/recall/")
        assert recalled.status_code == 200, "the session just saved must be read back"
        assert recalled.content == b"remember me"
        assert not cluster.standbys[0].query("SELECT 1 FROM django_session")
        link.restore()


def test_every_routed_read_is_signalled(cluster: LocalCluster, site: SettingsWrapper) -> None:
    seen: list[tuple[str, str]] = []

    def on_replica(alias: str, **kwargs: Any) -> None:
        seen.append(("replica", alias))

    def on_fallback(alias: str, reason: str, **kwargs: Any) -> None:
        seen.append((reason, alias))

    signals.replica_read.connect(on_replica)
    signals.primary_fallback.connect(on_fallback)
    try:
        with routed_aliases(cluster, site):
            measure()
            client = Client()
            client.get("/items/none/")
            client.post("/items/", {"name": "signalled"})
            client.get("/items/signalled/")
    finally:
        signals.replica_read.disconnect(on_replica)
        signals.primary_fallback.disconnect(on_fallback)
    assert seen[0] == ("replica", REPLICA)
    assert ("read_your_writes", PRIMARY) in seen
