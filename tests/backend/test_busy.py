"""A full database is BUSY, not DOWN: real servers, poolers and pools at their limits.

"sorry, too many clients already" (53300) is what a healthy database answers in the
first seconds on a new primary. It must never open the breaker, never mark a working
connection stale, never count as an outage; the caller backs off and retries within its
deadline, and past it gets DatabaseBusy: the 503 page with a short Retry-After.
"""

from __future__ import annotations

import contextlib
import gettext
import glob
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, connections
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import signals, stats
from django_pg_resilience.backend.alias import alias_state
from django_pg_resilience.errors import (
    DatabaseBusy,
    ErrorKind,
    classify,
    is_availability_error,
    is_busy,
)
from django_pg_resilience.testing import LocalCluster, PgBouncer
from tests.backend.conftest import item_alias
from tests.testapp.models import Item

#: A small server: 8 client slots (max_wal_senders must stay below max_connections).
SMALL = {"max_connections": "8", "superuser_reserved_connections": "0", "max_wal_senders": "2"}


@pytest.fixture(scope="module")
def small_server() -> Iterator[LocalCluster]:
    with LocalCluster(standbys=0, server_settings=SMALL) as cluster:
        yield cluster


@pytest.fixture
def small(small_server: LocalCluster, django_db_blocker: Any) -> Iterator[LocalCluster]:
    with django_db_blocker.unblock():
        yield small_server
    small_server.primary.query("DROP TABLE IF EXISTS testapp_item")


@contextlib.contextmanager
def slots_taken(node: Any) -> Iterator[list[psycopg.Connection[Any]]]:
    """Every client slot of ``node`` held by a connection of its own (until the block ends)."""
    held: list[psycopg.Connection[Any]] = []
    try:
        while True:
            try:
                held.append(node.connect())
            except psycopg.OperationalError as exc:
                assert classify(exc) is ErrorKind.BUSY, exc
                break
            assert len(held) < 100, "the server never said it was full"
        yield held
    finally:
        for connection in held:
            connection.close()


def busy_errors(alias: str) -> int:
    return stats.snapshot().get("busy_errors", {}).get(alias, 0)


def wait_until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_a_full_server_makes_callers_wait_then_get_database_busy(
    small: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    opened: list[object] = []
    signals.breaker_opened.connect(lambda **kw: opened.append(kw), weak=False, dispatch_uid="b")
    try:
        with item_alias("full", small.primary, OPTIONS={"resilience": {"deadline": 0.8}}):
            connections["full"].close()
            with slots_taken(small.primary), caplog.at_level(logging.WARNING):
                with pytest.raises(DatabaseBusy) as raised:
                    Item.objects.using("full").count()
                with pytest.raises(DatabaseBusy):
                    Item.objects.using("full").count()
            assert is_availability_error(raised.value) and is_busy(raised.value)
            assert raised.value.retry_after >= 1
            state = alias_state("full")
            assert state.breaker.state == "closed" and state.breaker.outage_since is None
            assert not opened
            assert busy_errors("full") >= 4  # each caller retried within its deadline
            snapshot = stats.snapshot()
            assert snapshot.get("connect_failures", {}).get("full", 0) == 0  # not an outage
            assert snapshot.get("unavailable_errors", {}).get("full", 0) == 0
            lines = [r.getMessage() for r in caplog.records if "busy" in r.getMessage()]
            assert len(lines) == 1, lines  # one line per episode
            assert "connection slots exhausted on 127.0.0.1:" in lines[0] and "53300" in lines[0]
            assert "unreachable" not in caplog.text
            # The slots are free again: the next caller connects at once.
            assert Item.objects.using("full").count() == 0
    finally:
        signals.breaker_opened.disconnect(dispatch_uid="b")


def test_a_caller_gets_in_as_soon_as_a_slot_frees(small: LocalCluster) -> None:
    with item_alias("frees", small.primary, OPTIONS={"resilience": {"deadline": 20}}):
        connections["frees"].close()
        results: list[object] = []
        with slots_taken(small.primary) as held:

            def reader() -> None:
                try:
                    results.append(Item.objects.using("frees").count())
                except Exception as exc:
                    results.append(exc)
                finally:
                    connections["frees"].close()

            thread = threading.Thread(target=reader)
            thread.start()
            wait_until(lambda: busy_errors("frees") >= 2)
            held.pop().close()  # one slot frees
            thread.join(20)
        assert results == [0]
        assert alias_state("frees").breaker.outage_since is None


def test_a_working_connection_keeps_working_while_the_server_is_full(small: LocalCluster) -> None:
    with item_alias("working", small.primary, OPTIONS={"resilience": {"deadline": 0.3}}):
        Item.objects.using("working").count()
        raw = connections["working"].connection
        with slots_taken(small.primary):
            other: list[object] = []

            def newcomer() -> None:
                try:
                    Item.objects.using("working").count()
                except Exception as exc:
                    other.append(exc)
                finally:
                    connections["working"].close()

            thread = threading.Thread(target=newcomer)
            thread.start()
            thread.join(10)
            assert other and isinstance(other[0], DatabaseBusy)
            # This thread's connection predates the busy episode and is not dropped.
            assert Item.objects.using("working").create(name="still here").pk
            assert connections["working"].connection is raw


def test_the_middleware_answers_a_full_server_with_a_short_retry_after(
    small: LocalCluster, settings: SettingsWrapper
) -> None:
    settings.ROOT_URLCONF = "tests.middleware.urls"
    settings.MIDDLEWARE = ["django_pg_resilience.middleware.DatabaseUnavailableMiddleware"]
    settings.MIDDLEWARE_TESTS_DATABASE = "busy_mw"
    outage_signals: list[object] = []
    signals.database_unavailable_response.connect(
        lambda **kw: outage_signals.append(kw), weak=False, dispatch_uid="mw"
    )
    try:
        with item_alias("busy_mw", small.primary, OPTIONS={"resilience": {"deadline": 0.3}}):
            connections["busy_mw"].close()
            with slots_taken(small.primary):
                page = Client().get("/shop/")
                api = Client().get("/api/items/", HTTP_ACCEPT="application/json")
        assert page.status_code == 503 and api.status_code == 503
        assert page["Retry-After"] == "1"
        assert api.json() == {"error": "database_busy", "retry_after": 1}
        assert stats.snapshot()["busy_responses"]["busy_mw"] == 2
        assert not outage_signals  # busy is not an outage
    finally:
        signals.database_unavailable_response.disconnect(dispatch_uid="mw")


def test_pgbouncer_at_max_client_conn_is_busy(small: LocalCluster) -> None:
    with PgBouncer(small.primary, max_client_conn=2) as bouncer:
        held = [
            psycopg.connect(
                host=bouncer.host, port=bouncer.port, user="postgres", dbname="postgres"
            )
            for _ in range(2)
        ]
        try:
            with pytest.raises(psycopg.OperationalError) as raised:
                psycopg.connect(
                    host=bouncer.host, port=bouncer.port, user="postgres", dbname="postgres"
                )
        finally:
            for connection in held:
                connection.close()
    assert "max_client_conn" in str(raised.value)
    assert classify(raised.value) is ErrorKind.BUSY  # despite PgBouncer's 08P01


def test_a_pool_whose_queue_is_full_is_busy(small: LocalCluster) -> None:
    options = {"pool": {"min_size": 1, "max_size": 1, "max_waiting": 1, "timeout": 5}}
    with item_alias("queue", small.primary, OPTIONS=options):
        connections["queue"].close()  # back to the pool: its one connection is the holder's
        holding = threading.Event()
        release = threading.Event()
        outcomes: list[object] = []

        def hold() -> None:
            with connections["queue"].cursor() as cursor:
                cursor.execute("SELECT 1")
                holding.set()
                release.wait(10)
            connections["queue"].close()

        def wait_in_queue() -> None:
            try:
                outcomes.append(Item.objects.using("queue").count())
            finally:
                connections["queue"].close()

        holder = threading.Thread(target=hold)
        holder.start()
        assert holding.wait(10)
        waiter = threading.Thread(target=wait_in_queue)
        waiter.start()
        pool = connections["queue"].pool
        wait_until(lambda: pool.get_stats().get("requests_waiting", 0) >= 1)
        with pytest.raises(OperationalError) as raised:
            Item.objects.using("queue").count()
        release.set()
        holder.join(10)
        waiter.join(10)
        connections["queue"].close()
    assert type(raised.value.__cause__).__name__ == "TooManyRequests"
    assert classify(raised.value) is ErrorKind.BUSY
    assert is_availability_error(raised.value)
    assert alias_state("queue").breaker.state == "closed"
    assert outcomes == [0]


def _installed_translations() -> dict[str, list[str]]:
    """The server's own words for "full", in every language PostgreSQL installed here ships."""
    ids = (
        "sorry, too many clients already",
        "remaining connection slots are reserved for non-replication superuser connections",
        'too many connections for role "%s"',
        'too many connections for database "%s"',
    )
    found: dict[str, list[str]] = {}
    for path in sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/postgres-*.mo")):
        with open(path, "rb") as file:
            catalog = gettext.GNUTranslations(file)
        language = path.split("/")[4]
        found[language] = [catalog.gettext(text).replace("%s", "shop") for text in ids]
    return found


def test_a_full_server_is_busy_in_every_language_it_may_answer_in() -> None:
    translations = _installed_translations()
    if not translations:
        pytest.skip("no PostgreSQL message catalogs installed (postgresql's locale files)")
    for language, messages in translations.items():
        for message in messages:
            error = psycopg.OperationalError(
                f'connection failed: connection to server at "10.0.0.1", port 25060 failed: '
                f"FATAL:  {message}"
            )
            assert classify(error) is ErrorKind.BUSY, (language, message)


def test_what_is_not_full_is_not_busy() -> None:
    refused = psycopg.OperationalError(
        'connection failed: connection to server at "10.0.0.1", port 25060 failed: '
        "Connection refused"
    )
    assert classify(refused) is ErrorKind.CONNECTION
    password = psycopg.OperationalError(
        'connection failed: FATAL:  password authentication failed for user "shop"'
    )
    assert classify(password) is ErrorKind.CONFIGURATION
    assert not is_busy(ValueError("sorry, too many clients already"))  # not a database error


def test_connection_attempts_are_bounded_per_process(small: LocalCluster) -> None:
    """16 threads connecting at once through a slow endpoint dial two at a time."""
    with item_alias("budget", small.endpoint, OPTIONS={"resilience": {"deadline": 30}}):
        small.endpoint.delay(50)
        try:
            barrier = threading.Barrier(16)
            results: list[object] = []

            def reader() -> None:
                barrier.wait()
                try:
                    results.append(Item.objects.using("budget").count())
                except Exception as exc:
                    results.append(exc)
                finally:
                    connections["budget"].close()

            threads = [threading.Thread(target=reader) for _ in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        finally:
            small.endpoint.restore()
        slots = alias_state("budget").connect_slots
    assert results == [0] * 16
    assert slots.limit == 2
    assert slots.peak == 2  # at most the budget, and it was used


def test_a_process_backs_off_as_one_and_a_success_lets_it_go() -> None:
    """Each refusal holds back every caller of the process (not just the one refused), with a
    backoff that grows with the refusals in a row; a success ends the run."""
    from django_pg_resilience.backend.busy import BusyEpisode
    from django_pg_resilience.backoff import RetryPolicy

    episode = BusyEpisode("gate")
    now = [1000.0]
    episode._clock = lambda: now[0]
    backoff = RetryPolicy(base=0.1, cap=1.0, random=lambda: 1.0)  # the longest draw
    full = psycopg.OperationalError("FATAL:  sorry, too many clients already")
    assert episode.seconds_to_retry() == 0.0
    for expected in (0.1, 0.2, 0.4, 0.8, 1.0, 1.0):
        episode.refused(full, "db:5432", backoff)
        assert episode.seconds_to_retry() == pytest.approx(expected)
        now[0] += expected
    # A caller that found no attempt slot of its own did not ask the server: no push.
    episode.refused(DatabaseBusy("no slot"), "db:5432", backoff, answered=False)
    assert episode.seconds_to_retry() == 0.0
    episode.refused(full, "db:5432", backoff)
    assert episode.seconds_to_retry() == pytest.approx(1.0)
    episode.connected()
    assert episode.seconds_to_retry() == 0.0
    episode.refused(full, "db:5432", backoff)
    assert episode.seconds_to_retry() == pytest.approx(0.1)  # the run starts again
