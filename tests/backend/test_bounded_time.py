"""Bounded time: a silent server never hangs a statement; a busy pool is load, not an outage."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import ProgrammingError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from django_pg_resilience import stats
from django_pg_resilience.backend.alias import alias_state
from django_pg_resilience.conf import backend_settings
from django_pg_resilience.errors import (
    CommitUnknownError,
    FailoverError,
    TransactionLostError,
    is_availability_error,
)
from django_pg_resilience.retry import atomic_with_retry
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
from tests.backend.conftest import fail_over, item_alias
from tests.testapp.models import Item

#: A short deadline keeps these tests quick; the bounds scale with it.
DEADLINE = 2.0
RESILIENCE = {"deadline": DEADLINE}


def _run_in_thread(work: Callable[[], Any], alias: str) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        started = time.monotonic()
        try:
            outcome["value"] = work()
        except Exception as exc:
            outcome["error"] = exc
        finally:
            outcome["elapsed"] = time.monotonic() - started
            connections[alias].close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def _wait_until_running(node: Any, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not node.query(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s",
        (f"%{text}%",),
    )[0][0]:
        assert time.monotonic() < deadline, f"{text!r} never started on {node}"
        time.sleep(0.01)


def _read_in_flight(alias: str, marker: str) -> Callable[[], Any]:
    def work() -> Any:
        with connections[alias].cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM testapp_item /* {marker} */, pg_sleep(0.3)")
            return cursor.fetchone()

    return work


@pytest.mark.parametrize("mode", ["persistent", "pool"])
def test_a_statement_in_flight_when_the_endpoint_goes_silent_ends_within_the_deadline(
    cluster: LocalCluster, mode: str
) -> None:
    """An ACKing path (a userspace proxy) that stops answering: stock Django hangs."""
    options: dict[str, Any] = {"resilience": RESILIENCE}
    extra: dict[str, Any] = {"CONN_MAX_AGE": 60}
    if mode == "pool":
        options["pool"] = {"min_size": 1, "max_size": 4, "timeout": 10}
        extra = {}
    with item_alias("ours", cluster.endpoint, OPTIONS=options, **extra):
        Item.objects.using("ours").create(name="x")
        connections["ours"].close()
        thread, outcome = _run_in_thread(_read_in_flight("ours", "silent-1"), "ours")
        _wait_until_running(cluster.primary, "silent-1")
        cluster.endpoint.blackhole()
        thread.join(timeout=60)
        if mode == "pool":
            connections["ours"].close_pool()
    assert not thread.is_alive()
    assert is_availability_error(outcome["error"]), outcome
    # liveness_after (1 s) + deadline, plus at most one connect_timeout in flight (2 s).
    assert outcome["elapsed"] < 1.0 + DEADLINE + 2.0 + 1.0, outcome
    assert stats.snapshot()["silent_peer_aborts"]["ours"] == 1


def test_a_long_statement_on_a_healthy_server_is_left_alone(cluster: LocalCluster) -> None:
    with (
        item_alias("ours", cluster.endpoint, OPTIONS={"resilience": RESILIENCE}),
        connections["ours"].cursor() as cursor,
    ):
        started = time.monotonic()
        cursor.execute("SELECT pg_sleep(3.5)")
        elapsed = time.monotonic() - started
    checks = stats.snapshot()["liveness_checks"]["ours"]
    assert elapsed >= 3.5
    # One check per liveness_interval (1 s): none in the first second, then one a second.
    assert 2 <= checks <= 3
    assert "silent_peer_aborts" not in stats.snapshot()


def test_a_long_statement_found_alive_is_still_abandoned_when_its_server_goes_silent_later(
    cluster: LocalCluster,
) -> None:
    with item_alias("ours", cluster.endpoint, OPTIONS={"resilience": RESILIENCE}):
        thread, outcome = _run_in_thread(
            lambda: connections["ours"].cursor().execute("SELECT pg_sleep(30) /* late-1 */"),
            "ours",
        )
        _wait_until_running(cluster.primary, "late-1")
        deadline = time.monotonic() + 10
        while stats.snapshot().get("liveness_checks", {}).get("ours", 0) < 1:
            assert time.monotonic() < deadline, "no liveness check in 10 s"
            time.sleep(0.05)
        cluster.endpoint.blackhole()
        faulted = time.monotonic()
        thread.join(timeout=60)
        ended = time.monotonic() - faulted
    assert not thread.is_alive()
    assert is_availability_error(outcome["error"]), outcome
    # The next check (within liveness_interval) finds the endpoint silent.
    assert ended < 1.0 + 2.0 + DEADLINE + 1.0, ended


def test_pool_exhaustion_is_load_not_an_outage(cluster: LocalCluster) -> None:
    from psycopg_pool import PoolTimeout

    pool = {"min_size": 0, "max_size": 2, "timeout": 0.5}
    with database_alias("pooled", cluster.endpoint, OPTIONS={"pool": pool}):
        holders = [connections["pooled"].copy() for _ in range(2)]
        try:
            for holder in holders:
                holder.connect()
            third = connections["pooled"].copy()
            started = time.monotonic()
            with pytest.raises(PoolTimeout):
                third.connect()
            elapsed = time.monotonic() - started
            assert alias_state("pooled").breaker.state == "closed"
            assert stats.snapshot()["pool_timeouts"]["pooled"] == 1
            assert "connect_failures" not in stats.snapshot()
            # The pool's own timeout is honoured, not replaced by the deadline.
            assert elapsed < backend_settings("pooled").deadline
            holders[0].close()
            third.connect()  # a connection freed: the next checkout just works
            assert third.connection.execute("SELECT 1").fetchone() == (1,)
            third.close()
        finally:
            for holder in holders:
                holder.close()
            connections["pooled"].close_pool()


def test_a_lost_transaction_is_also_djangos_programming_error(cluster: LocalCluster) -> None:
    with item_alias("ours", cluster.endpoint):
        wrapper = connections["ours"]
        wrapper.close()
        wrapper.in_atomic_block = True
        wrapper.closed_in_transaction = True
        try:
            with pytest.raises(ProgrammingError, match="Cannot open a new connection") as raised:
                wrapper.ensure_connection()
        finally:
            wrapper.in_atomic_block = False
            wrapper.closed_in_transaction = False
        assert isinstance(raised.value, TransactionLostError)
        assert isinstance(raised.value, FailoverError)


def test_patching_the_base_ensure_connection_does_not_recurse(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Django's own test utilities patch it to call the bound method back."""
    with item_alias("ours", cluster.endpoint):
        wrapper = connections["ours"]
        wrapper.close()
        real = wrapper.ensure_connection
        calls = []

        def patched(self: Any) -> None:
            calls.append(1)
            real()

        monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", patched)
        assert Item.objects.using("ours").count() == 0
        assert wrapper.connection is not None
        # The patch was honoured (Django's test utilities rely on it) and ran once per open.
        assert calls == [1]


def test_a_read_is_not_replayed_on_a_session_without_the_lost_sessions_state(
    cluster: LocalCluster,
) -> None:
    with item_alias("ours", cluster.endpoint, CONN_MAX_AGE=60):
        Item.objects.using("ours").create(name="x")
        cluster.wait_for_replay(cluster.standbys[0])
        with connections["ours"].cursor() as cursor:
            cursor.execute("SET search_path TO pg_catalog, public")
        fail_over(cluster)
        with pytest.raises(FailoverError, match="session had state"):
            Item.objects.using("ours").count()
        # The next session starts clean: reads are replayed again.
        assert Item.objects.using("ours").count() == 1


def test_an_applications_own_read_only_transaction_is_not_a_demotion(
    cluster: LocalCluster,
) -> None:
    from django.db import InternalError

    with item_alias("ours", cluster.endpoint, CONN_MAX_AGE=60):
        Item.objects.using("ours").count()
        pid = connections["ours"].connection.info.backend_pid
        with pytest.raises(InternalError), transaction.atomic(using="ours"):
            with connections["ours"].cursor() as cursor:
                cursor.execute("SET TRANSACTION READ ONLY")
            Item.objects.using("ours").create(name="refused")
        assert Item.objects.using("ours").count() == 0
        assert connections["ours"].connection.info.backend_pid == pid  # not reconnected
    assert "reconnects" not in stats.snapshot()


@pytest.mark.parametrize("idempotent", [False, True])
def test_a_commit_of_unknown_fate_is_re_run_only_for_an_idempotent_unit(
    cluster: LocalCluster, idempotent: bool
) -> None:
    runs: list[int] = []
    with item_alias("ours", cluster.endpoint):

        def unit() -> None:
            runs.append(1)
            Item.objects.using("ours").get_or_create(name="once")
            if len(runs) == 1:
                cluster.endpoint.reset_all()  # the COMMIT goes out on a dead connection

        retried = atomic_with_retry(unit, using="ours", idempotent=idempotent)
        if idempotent:
            retried()
            assert len(runs) == 2
        else:
            with pytest.raises(CommitUnknownError):
                retried()
            assert len(runs) == 1
        assert Item.objects.using("ours").filter(name="once").count() <= 1


def test_read_write_follows_target_session_attrs(settings: Any) -> None:
    entry = {"OPTIONS": {"target_session_attrs": "read-only"}}
    assert backend_settings("replica", entry).read_write is False
    assert backend_settings("primary", {"OPTIONS": {}}).read_write is True
    forced = {"OPTIONS": {"target_session_attrs": "standby", "resilience": {"read_write": True}}}
    assert backend_settings("forced", forced).read_write is True


@pytest.fixture
def netns_cluster(pg_netns_cluster: LocalCluster, django_db_blocker: Any) -> Any:
    with django_db_blocker.unblock():
        yield pg_netns_cluster


@pytest.mark.parametrize("mode", ["persistent", "pool"])
def test_a_peer_that_sends_nothing_at_all_ends_the_statement_within_the_deadline(
    netns_cluster: LocalCluster, mode: str
) -> None:
    """A dead VM whose address still routes: no ACK, no RST, nothing."""
    primary = netns_cluster.primary
    options: dict[str, Any] = {"resilience": RESILIENCE}
    extra: dict[str, Any] = {"CONN_MAX_AGE": 60}
    if mode == "pool":
        options["pool"] = {"min_size": 1, "max_size": 4, "timeout": 10}
        extra = {}
    with item_alias("ours", primary, OPTIONS=options, **extra):
        Item.objects.using("ours").create(name="x")
        connections["ours"].close()
        thread, outcome = _run_in_thread(_read_in_flight("ours", "nothing-1"), "ours")
        _wait_until_running(primary, "nothing-1")
        primary.namespace.silence()
        try:
            thread.join(timeout=60)
        finally:
            primary.namespace.restore()
        if mode == "pool":
            connections["ours"].close_pool()
    assert not thread.is_alive()
    assert is_availability_error(outcome["error"]), outcome
    assert outcome["elapsed"] < 1.0 + DEADLINE + 2.0 + 1.0, outcome


def test_after_an_outage_the_pool_is_replaced_so_its_reconnect_backoff_adds_nothing(
    cluster: LocalCluster,
) -> None:
    """psycopg_pool alone would retry its connections 1, 2, 4... seconds apart."""
    pool = {"min_size": 2, "max_size": 8, "timeout": 10}
    with item_alias("pooled", cluster.endpoint, OPTIONS={"pool": pool}):
        Item.objects.using("pooled").create(name="x")
        connections["pooled"].close()
        cluster.wait_for_replay(cluster.standbys[0])
        before = connections["pooled"].pool
        old = cluster.primary
        cluster.endpoint.point_to(None)  # the endpoint refuses: a long outage
        cluster.kill(old)
        new = cluster.promote(cluster.standbys[0])
        deadline = time.monotonic() + 30
        while alias_state("pooled").breaker.state != "open" or before.connect_failures < 3:
            assert time.monotonic() < deadline, "the outage never opened the breaker"
            with pytest.raises(Exception) as raised:
                Item.objects.using("pooled").count()
            assert is_availability_error(raised.value)
            connections["pooled"].close()
        cluster.endpoint.point_to(new)
        moved = time.monotonic()
        while True:
            try:
                count = Item.objects.using("pooled").count()
                break
            except Exception as exc:
                assert is_availability_error(exc)
                connections["pooled"].close()
                assert time.monotonic() - moved < 10, "no read succeeded 10 s after the move"
                time.sleep(0.02)
        after = connections["pooled"].pool
        connections["pooled"].close()
        connections["pooled"].close_pool()
    assert count == 1
    # The pool whose reconnect backoff grew through the outage was replaced: a new pool
    # connects at once. (How soon after the move: bench/bench_bounded_time.py, target 1 s.)
    assert after is not before


def test_a_replay_backs_off_between_reconnects(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server kills the read each time it is replayed: the replays are spaced out."""
    from django_pg_resilience.backend import cursor as cursor_module

    slept: list[float] = []
    real_sleep = time.sleep

    def recording_sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(cursor_module.time, "sleep", recording_sleep)
    stop = threading.Event()

    def terminate_the_read() -> None:
        while not stop.is_set():
            cluster.primary.query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE %s AND pid <> pg_backend_pid()",
                ("%backoff-1%",),
            )
            real_sleep(0.005)

    options = {"resilience": {"deadline": 1.0, "backoff_base": 0.05, "backoff_cap": 0.05}}
    with item_alias("ours", cluster.primary, OPTIONS=options):
        Item.objects.using("ours").count()
        terminator = threading.Thread(target=terminate_the_read)
        terminator.start()
        try:
            with pytest.raises(FailoverError), connections["ours"].cursor() as cursor:
                cursor.execute("SELECT pg_sleep(0.5) /* backoff-1 */")
        finally:
            stop.set()
            terminator.join()
    retries = stats.snapshot()["retries"]["ours"]
    assert retries >= 3
    # Every failed replay waits the policy's delay before the next reconnect.
    assert len(slept) == retries - 1
    assert all(0 <= delay <= 0.05 for delay in slept)


def test_inside_a_transaction_a_silent_server_ends_the_wait_and_nothing_is_kept(
    cluster: LocalCluster,
) -> None:
    with item_alias("ours", cluster.endpoint, OPTIONS={"resilience": RESILIENCE}):

        def unit() -> None:
            with transaction.atomic(using="ours"):
                Item.objects.using("ours").create(name="half")
                with connections["ours"].cursor() as cursor:
                    cursor.execute("SELECT pg_sleep(5) /* atomic-1 */")

        thread, outcome = _run_in_thread(unit, "ours")
        _wait_until_running(cluster.primary, "atomic-1")
        cluster.endpoint.blackhole()
        thread.join(timeout=60)
        cluster.endpoint.restore()
        cluster.endpoint.point_to(cluster.primary)
        assert not thread.is_alive()
        assert isinstance(outcome["error"], TransactionLostError), outcome
        assert outcome["elapsed"] < 1.0 + DEADLINE + 2.0 + 1.0, outcome
        assert Item.objects.using("ours").count() == 0


def test_waiting_for_notifications_is_not_mistaken_for_a_silent_server(
    cluster: LocalCluster,
) -> None:
    """LISTEN leaves the session idle while it waits, however long: not a lost answer."""
    with item_alias("ours", cluster.endpoint, OPTIONS={"resilience": RESILIENCE}):
        wrapper = connections["ours"]
        wrapper.ensure_connection()
        raw = wrapper.connection
        raw.execute("LISTEN orders")
        sent = threading.Timer(
            2.5, lambda: cluster.primary.query("SELECT pg_notify('orders', 'placed')")
        )
        sent.start()
        try:
            received = next(iter(raw.notifies(stop_after=1)))  # no timeout: the wait is ours
        finally:
            sent.cancel()
        assert received.payload == "placed"
        assert stats.snapshot().get("silent_peer_aborts", {}).get("ours", 0) == 0
