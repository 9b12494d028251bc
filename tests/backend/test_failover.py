"""The backend against real failovers: kill the primary, promote, move the endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from django.db import OperationalError, connections, transaction

from django_pg_resilience import signals, stats
from django_pg_resilience.backend.alias import alias_state
from django_pg_resilience.errors import DatabaseUnavailable, FailoverError
from django_pg_resilience.retry import atomic_with_retry
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
from tests.backend.conftest import fail_over, item_alias
from tests.testapp.models import Item

T = TypeVar("T")

STOCK = "django.db.backends.postgresql"


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest, django_db_blocker: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalCluster]:
    """A fresh cluster; with the "verify-full" param, TLS-only nodes (plain TCP refused)
    and every libpq connection of the process on sslmode=verify-full (PGSSLMODE)."""
    tls = getattr(request, "param", "plain") == "verify-full"
    with LocalCluster(standbys=1, tls=tls) as fresh, django_db_blocker.unblock():
        for name, value in fresh.tls_params().items():
            monkeypatch.setenv(f"PG{name.upper()}", value)
        yield fresh


#: Run a test on plain TCP and again over TLS, as on a managed database.
also_over_tls = pytest.mark.parametrize("cluster", ["plain", "verify-full"], indirect=True)


@also_over_tls
def test_autocommit_reads_ride_through_a_failover_where_stock_django_fails(
    cluster: LocalCluster,
) -> None:
    failovers: list[dict[str, object]] = []

    def on_failover(**kwargs: object) -> None:
        failovers.append(kwargs)

    signals.failover_detected.connect(on_failover)
    try:
        with (
            item_alias("ours", cluster.endpoint),
            database_alias("stock", cluster.endpoint, engine=STOCK, OPTIONS={"connect_timeout": 2}),
        ):
            Item.objects.using("ours").create(name="before")
            cluster.wait_for_replay(cluster.standbys[0])
            assert Item.objects.using("stock").count() == 1

            fail_over(cluster)

            # Ours: the same loop of reads sees no exception at all.
            names = [
                list(Item.objects.using("ours").values_list("name", flat=True)) for _ in range(5)
            ]
            assert names == [["before"]] * 5
            # Stock Django: the dead connection stays dead for the whole "request".
            stock_errors = 0
            for _ in range(5):
                try:
                    Item.objects.using("stock").count()
                except OperationalError:
                    stock_errors += 1
                except Exception:  # InterfaceError "connection already closed"
                    stock_errors += 1
            assert stock_errors == 5
    finally:
        signals.failover_detected.disconnect(on_failover)
    assert len(failovers) == 1
    assert failovers[0]["alias"] == "ours"
    assert stats.snapshot()["reconnects"]["ours"] >= 1


@also_over_tls
def test_write_in_atomic_raises_failover_error_and_leaves_nothing_half_written(
    cluster: LocalCluster,
) -> None:
    with item_alias("ours", cluster.endpoint):
        Item.objects.using("ours").create(name="seed")
        cluster.wait_for_replay(cluster.standbys[0])
        with pytest.raises(FailoverError), transaction.atomic(using="ours"):
            Item.objects.using("ours").create(name="half-1")
            fail_over(cluster)
            Item.objects.using("ours").create(name="half-2")
        # The block rolled back; the connection was replaced on next use.
        assert sorted(Item.objects.using("ours").values_list("name", flat=True)) == ["seed"]


def test_atomic_with_retry_leaves_exactly_one_row_after_a_failover(cluster: LocalCluster) -> None:
    calls = 0

    @atomic_with_retry(using="ours")
    def create_pair() -> None:
        nonlocal calls
        calls += 1
        Item.objects.using("ours").create(name="unit-a")
        if calls == 1:
            fail_over(cluster)
        Item.objects.using("ours").create(name="unit-b")

    with item_alias("ours", cluster.endpoint):
        Item.objects.using("ours").create(name="seed")
        cluster.wait_for_replay(cluster.standbys[0])
        create_pair()
        assert calls == 2
        names = sorted(Item.objects.using("ours").values_list("name", flat=True))
        assert names == ["seed", "unit-a", "unit-b"]


def test_a_long_running_worker_loop_survives_a_failover(cluster: LocalCluster) -> None:
    """A thread that never sees a request cycle: no close_old_connections() anywhere."""
    errors: list[BaseException] = []
    done = threading.Event()
    written = threading.Event()
    count = 0

    @atomic_with_retry(using="ours", deadline=15.0, idempotent=True)  # update_or_create by name
    def record(n: int) -> None:
        Item.objects.using("ours").update_or_create(name=f"job-{n}", defaults={"quantity": n})

    def worker() -> None:
        nonlocal count
        try:
            while not done.is_set():
                record(count)
                assert Item.objects.using("ours").filter(name=f"job-{count}").exists()
                count += 1
                if count >= 3:
                    written.set()
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
            written.set()
        finally:
            connections["ours"].close()

    # Synchronous: a commit the worker saw must survive the crash (with asynchronous
    # replication the last commits before it may be lost, which is not this test's point).
    cluster.set_synchronous(cluster.standbys[0])
    with item_alias("ours", cluster.endpoint):
        thread = threading.Thread(target=worker)
        thread.start()
        assert written.wait(30)
        cluster.wait_for_replay(cluster.standbys[0])
        before = count
        fail_over(cluster)
        deadline = time.monotonic() + 30
        while count < before + 5 and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        done.set()
        thread.join(30)
        assert not errors, errors
        assert count >= before + 5


def test_a_blackholed_established_connection_errors_within_io_timeout_plus_deadline(
    cluster: LocalCluster,
) -> None:
    """Loopback ACKs everything, so only the client-side io_timeout can notice (see docs)."""
    options = {"connect_timeout": 2, "resilience": {"io_timeout": 1.0, "deadline": 1.0}}
    with item_alias("ours", cluster.endpoint, OPTIONS=options):
        assert Item.objects.using("ours").count() == 0
        cluster.endpoint.blackhole()
        started = time.monotonic()
        # Past the deadline the caller gets the outage error (a 503 in a view), not a
        # driver error of the blackhole's making.
        with pytest.raises(DatabaseUnavailable):
            Item.objects.using("ours").count()
        elapsed = time.monotonic() - started
        # io_timeout (1) + deadline (1) + one connect_timeout (2) + slack; stock: forever.
        assert elapsed < 8
        cluster.endpoint.restore()
        # The outage outlived the deadline, so the circuit may be open: callers fail
        # fast until its next probe (1 s), which then closes it.
        assert _first_success(lambda: Item.objects.using("ours").count(), within=10) == 0


def test_threads_held_through_an_outage_read_the_new_identity_once(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe that ends the outage reads the server identity; the waiters it
    releases reconnect without reading it again (one round trip each less for
    the new primary) and the failover is reported once. One reader is held in
    its session_lost hook until the new identity has been read: its loss still
    dates from before that read (a thread descheduled there once made a second
    read in CI)."""
    from django_pg_resilience.backend import base, identity
    from django_pg_resilience.backend.hooks import ConnectionHooks

    reads: list[int] = []
    read_identity = identity.read_identity

    def counted_read_identity(connection: object) -> object:
        reads.append(threading.get_ident())
        return read_identity(connection)  # type: ignore[arg-type]

    held: list[int] = []

    class HoldOneReaderUntilTheIdentityIsRead(ConnectionHooks):
        def session_lost(self, wrapper: Any) -> None:
            with lock:
                if not go.is_set() or held:
                    return
                held.append(threading.get_ident())
            deadline = time.monotonic() + 20
            while not reads and time.monotonic() < deadline:
                time.sleep(0.005)

    monkeypatch.setattr(
        base.DatabaseWrapper,
        "connection_hooks",
        (*base.DatabaseWrapper.connection_hooks, HoldOneReaderUntilTheIdentityIsRead()),
    )

    failovers: list[object] = []

    def on_failover(**kwargs: object) -> None:
        failovers.append(kwargs)

    threads = 6
    wrappers: list[object] = []
    ready = threading.Barrier(threads + 1)
    go = threading.Event()
    results: list[object] = []
    lock = threading.Lock()

    def reader() -> None:
        try:
            Item.objects.using("ours").count()
            with lock:
                wrappers.append(connections["ours"])
            ready.wait()
            go.wait()
            result: object = Item.objects.using("ours").count()
        except BaseException as exc:  # reported to the test thread
            result = exc
        finally:
            connections["ours"].close()
        with lock:
            results.append(result)

    signals.failover_detected.connect(on_failover)
    try:
        with item_alias("ours", cluster.endpoint, OPTIONS={"resilience": {"deadline": 20}}):
            Item.objects.using("ours").create(name="before")
            cluster.wait_for_replay(cluster.standbys[0])
            workers = [threading.Thread(target=reader) for _ in range(threads)]
            for worker in workers:
                worker.start()
            ready.wait(30)
            cluster.endpoint.point_to(None)
            cluster.kill(cluster.primary)
            new = cluster.promote(cluster.standbys[0])
            monkeypatch.setattr(base, "read_identity", counted_read_identity)
            go.set()
            # Every reader has lost its connection and waits on the breaker.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not (
                alias_state("ours").breaker.state == "holding"
                and all(w.connection is None for w in wrappers)  # type: ignore[attr-defined]
            ):
                time.sleep(0.01)
            assert alias_state("ours").breaker.state == "holding"
            cluster.endpoint.point_to(new)
            for worker in workers:
                worker.join(30)
    finally:
        signals.failover_detected.disconnect(on_failover)
    assert results == [1] * threads
    assert held and held[0] not in reads
    assert len(reads) == 1
    assert len(failovers) == 1


def _first_success(query: Callable[[], T], *, within: float) -> T:
    """The first result of ``query`` that does not raise DatabaseUnavailable, polled."""
    deadline = time.monotonic() + within
    while True:
        try:
            return query()
        except DatabaseUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@also_over_tls
def test_the_old_primary_rejoined_as_a_standby_is_left_for_the_new_primary(
    cluster: LocalCluster,
) -> None:
    """A persistent connection, and the endpoint still (stale DNS) on the demoted node."""
    with item_alias("ours", cluster.endpoint, CONN_MAX_AGE=None):
        Item.objects.using("ours").create(name="before")
        cluster.wait_for_replay(cluster.standbys[0])
        old = cluster.primary
        new = fail_over(cluster)
        cluster.rejoin_as_standby(old)
        cluster.endpoint.point_to(old)

        retried = threading.Event()

        def on_retry(**kwargs: object) -> None:
            if kwargs["sqlstate"] == "25006":
                retried.set()

        signals.connection_retry.connect(on_retry)
        errors: list[BaseException] = []

        def write() -> None:
            try:
                Item.objects.using("ours").create(name="after")
            except BaseException as exc:
                errors.append(exc)
            finally:
                connections["ours"].close()

        try:
            writer = threading.Thread(target=write)
            writer.start()
            assert retried.wait(10), "the read-only session was not refused"
            cluster.endpoint.point_to(new)
            writer.join(15)
        finally:
            signals.connection_retry.disconnect(on_retry)
        assert not errors, errors
        assert new.query("SELECT name FROM testapp_item ORDER BY name") == [("after",), ("before",)]


def test_bad_password_fails_once_with_a_clear_error(cluster: LocalCluster) -> None:
    cluster.create_user("app", "right-password")
    with database_alias("ours", cluster.endpoint, USER="app", PASSWORD="wrong-password"):
        started = time.monotonic()
        with pytest.raises(OperationalError) as raised:
            connections["ours"].ensure_connection()
        assert time.monotonic() - started < 2
    message = str(raised.value)
    assert "password authentication failed" in message
    assert "check USER and PASSWORD" in message
    assert "wrong-password" not in message
    assert stats.snapshot()["connect_attempts"]["ours"] == 1


def test_unknown_database_fails_once_with_a_clear_error(cluster: LocalCluster) -> None:
    with (
        database_alias("ours", cluster.endpoint, NAME="no_such_db"),
        pytest.raises(OperationalError) as raised,
    ):
        connections["ours"].ensure_connection()
    assert "no_such_db" in str(raised.value)
    assert "fix NAME" in str(raised.value)
    assert stats.snapshot()["connect_attempts"]["ours"] == 1


def test_database_down_at_start_opens_the_breaker_and_then_fails_fast(
    cluster: LocalCluster,
) -> None:
    cluster.endpoint.point_to(None)
    options = {"resilience": {"deadline": 0.5, "breaker_open_interval": 30.0}}
    with database_alias("ours", cluster.endpoint, OPTIONS=options):
        with pytest.raises(DatabaseUnavailable):
            connections["ours"].ensure_connection()
        assert alias_state("ours").breaker.state == "open"
        attempts = stats.snapshot()["connect_attempts"]["ours"]

        with pytest.raises(DatabaseUnavailable) as raised:
            connections["ours"].ensure_connection()
        assert 0 < raised.value.retry_after <= 30
        assert stats.snapshot()["connect_attempts"]["ours"] == attempts  # no network touched


def _reset_when_running(cluster: LocalCluster, marker: str) -> None:
    """RST every endpoint connection once a statement containing ``marker`` runs."""
    deadline = time.monotonic() + 10
    while not cluster.primary.query(
        "SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s",
        [f"%{marker}%"],
    ):
        assert time.monotonic() < deadline, "the statement never started"
        time.sleep(0.01)
    cluster.endpoint.reset_all()


@also_over_tls
def test_a_read_in_flight_is_re_run_but_a_write_in_flight_is_not(cluster: LocalCluster) -> None:
    with item_alias("ours", cluster.endpoint):
        connection = connections["ours"]
        connection.ensure_connection()

        with connection.cursor() as cursor:
            # Every run of the write leaves the session it ran on; nothing unique in it.
            cursor.execute("CREATE TABLE write_runs (backend_pid integer NOT NULL)")
            cursor.execute("SELECT pg_backend_pid()")
            read_sent_on = cursor.fetchone()[0]

        resetter = threading.Thread(target=_reset_when_running, args=(cluster, "read_marker"))
        resetter.start()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 'read_marker', pg_sleep(0.5), 42, pg_backend_pid()")
            _, _, answer, read_answered_on = cursor.fetchone()
        resetter.join()
        # Answered after its session was reset mid-statement: re-run on a new session.
        assert answer == 42
        assert read_answered_on != read_sent_on
        assert stats.snapshot()["retries"]["ours"] == 1

        resetter = threading.Thread(target=_reset_when_running, args=(cluster, "write_marker"))
        resetter.start()
        with pytest.raises(FailoverError, match="not re-run"), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO write_runs (backend_pid) "
                "SELECT pg_backend_pid() FROM pg_sleep(0.5) /* write_marker */"
            )
        resetter.join()
        deadline = time.monotonic() + 10
        while cluster.primary.query(
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
            ["%/* write_marker */%"],
        ):  # the orphaned backend finishes (or aborts) its statement
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # The server may or may not have finished it; it never ran on another session.
        with connection.cursor() as cursor:
            cursor.execute("SELECT backend_pid FROM write_runs")
            runs = [pid for (pid,) in cursor.fetchall()]
        assert runs in ([], [read_answered_on]), runs
        assert stats.snapshot()["retries"]["ours"] == 1
        assert stats.snapshot()["failover_errors"]["ours"] == 1
