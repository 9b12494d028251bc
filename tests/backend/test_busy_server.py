"""Busy is not down, where users run: gunicorn, persistent connections, a crash, a full new primary.

The example shop on a real gunicorn (gthread, 2 processes x 4 threads, ``CONN_MAX_AGE=60``)
serves storefront reads and Shopify-signed orders. The primary crashes, the standby is
promoted, and when the endpoint moves to it only 3 of its client slots are free for 4 s
(the others held by connections of our own, as the rest of a fleet would hold them), then
freed. Every request must be answered 200 or 503, never 500; the circuit breaker must not
open during the hold (the database is up, only full); a connection the site got must keep
working. Timing targets (the rate served during the hold) live in bench/bench_fleet.py.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connections

from django_pg_resilience.errors import DatabaseBusy
from django_pg_resilience.testing import LocalCluster, Node
from example_project.drill.stack import WEBHOOK_SECRET, Stack
from example_project.drill.traffic import Traffic, TrafficConfig
from tests.backend.conftest import item_alias
from tests.testapp.models import Item

#: Client slots of each node: small, so that holding all but 3 is cheap.
SERVER_SETTINGS = {"max_connections": "20", "max_wal_senders": "4"}
FREE_SLOTS = 3
HOLD_SECONDS = 4.0
BREAKER_OPENED = "Circuit breaker for database 'default' opened"
BUSY_EPISODE = "connection slots exhausted"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Stack]:
    """The example shop on gunicorn (2 x 4 gthread), CONN_MAX_AGE=60, before a small cluster."""
    stack = Stack(
        workers=2,
        threads=4,
        conn_max_age=60,
        server_settings=SERVER_SETTINGS,
        server_log=tmp_path / "server.log",
    )
    with stack:
        stack.start_cluster()
        stack.migrate_and_seed()
        stack.start_server()
        yield stack


def fill_all_but(node: Node, free: int) -> tuple[list[psycopg.Connection[Any]], set[int]]:
    """Take every client slot of ``node`` with connections of our own, then give ``free`` back.

    Returns the connections kept, and the backend pids of all of them, the ones given back
    too: a closed session's backend stays in pg_stat_activity a moment after the close.
    """
    held: list[psycopg.Connection[Any]] = []
    while True:
        try:
            held.append(node.connect())
        except psycopg.OperationalError as exc:
            # The server's own words (the harness runs it in English), not the code under test.
            assert "too many clients" in str(exc), exc
            break
        assert len(held) < 100, "the server never said it was full"
    assert len(held) > free
    pids = {connection.info.backend_pid for connection in held}
    for connection in held[-free:]:
        connection.close()
    return held[:-free], pids


def connect_when_free(node: Node, timeout: float = 10.0) -> psycopg.Connection[Any]:
    """A connection as soon as a slot frees (a closed session's backend exits a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return node.connect()
        except psycopg.OperationalError as exc:
            if "too many clients" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def app_sessions(probe: psycopg.Connection[Any], ours: set[int]) -> set[int]:
    """Backend pids of the site's sessions on the node ``probe`` is connected to."""
    rows = probe.execute(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
    ).fetchall()
    return {row[0] for row in rows} - ours


class Squeeze:
    """Crash, promote, hold all but 3 slots of the new primary, move the endpoint, free them."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.events: dict[str, float] = {}
        self.log_offset = 0
        self.sessions_early: set[int] = set()
        self.sessions_late: set[int] = set()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _run(self) -> None:
        stack = self.stack
        cluster = stack.cluster
        assert cluster is not None
        old, standby = cluster.primary, cluster.standbys[0]
        self.events["fault"] = time.monotonic()
        cluster.kill(old)
        new = cluster.promote(standby)
        held, ours = fill_all_but(new, FREE_SLOTS)
        try:
            self.log_offset = stack.server_log.stat().st_size
            stack.endpoint.point_to(new)
            self.events["moved"] = time.monotonic()
            release_at = self.events["moved"] + HOLD_SECONDS
            probe = held[0]
            # The first sessions the site opens on the new primary: they must survive the hold.
            while not self.sessions_early and time.monotonic() < release_at - 0.5:
                self.sessions_early = app_sessions(probe, ours)
                time.sleep(0.05)
            time.sleep(max(release_at - time.monotonic(), 0.0))
            self.sessions_late = app_sessions(probe, ours)
        finally:
            for connection in held:
                connection.close()
            self.events["freed"] = time.monotonic()


@pytest.mark.slow
@pytest.mark.chaos
def test_a_crash_onto_a_full_new_primary_never_gives_a_500_nor_opens_the_breaker(
    shop: Stack, tmp_path: Path
) -> None:
    started = time.monotonic()
    config = TrafficConfig(
        host="127.0.0.1",
        port=shop.port,
        secret=WEBHOOK_SECRET,
        readers=4,
        senders=4,
        stop_at=started + 16.0,
        drain_until=started + 26.0,
        results_path=str(tmp_path / "traffic.json"),
    )
    traffic = Traffic(config)
    results: dict[str, Any] = {}
    client = threading.Thread(target=lambda: results.update(traffic.run()), daemon=True)
    client.start()
    squeeze = Squeeze(shop)
    time.sleep(3.0)  # traffic before the fault: persistent connections everywhere
    scenario = threading.Thread(target=squeeze.run, daemon=True)
    scenario.start()
    scenario.join(120)
    client.join(120)
    assert squeeze.error is None, repr(squeeze.error)
    assert not client.is_alive() and results, "the traffic did not finish"

    attempts = results["attempts"]
    statuses = Counter(attempt["status"] for attempt in attempts)
    assert statuses[500] == 0, statuses
    assert set(statuses) <= {200, 503}, statuses  # every request answered, 200 or 503

    log = shop.server_log.read_bytes()[squeeze.log_offset :].decode(errors="replace")
    # The squeeze happened: the site met a full server after the move...
    assert BUSY_EPISODE in log, log[-3000:]
    # ... and read it as busy, not down: no breaker opened from the move on.
    assert BREAKER_OPENED not in log, log[-3000:]
    # A connection that works keeps working: the site's first sessions on the new primary
    # were all still there when the slots were freed.
    assert squeeze.sessions_early, "the site never connected during the hold"
    assert squeeze.sessions_early <= squeeze.sessions_late
    moved, freed = squeeze.events["moved"], squeeze.events["freed"]
    during = Counter(a["status"] for a in attempts if moved <= a["end"] <= freed)
    after = Counter(a["status"] for a in attempts if a["start"] >= freed)
    assert during[200] > 0, during  # served through the 3 free slots
    assert after[200] > 0 and after[503] == 0, after
    with contextlib.suppress(Exception):
        shop.stop_server()


@pytest.fixture(scope="module")
def small_server() -> Iterator[LocalCluster]:
    with LocalCluster(standbys=0, server_settings=SERVER_SETTINGS) as cluster:
        yield cluster


class Reader(threading.Thread):
    """A thread that reads once on ALIAS and keeps its connection (its slot) until released."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.outcome: object = None
        self.done = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        try:
            self.outcome = Item.objects.using(SQUEEZED).count()
        except Exception as exc:
            self.outcome = exc
        self.done.set()
        self.release.wait(30)
        connections[SQUEEZED].close()


def read_once() -> Reader:
    reader = Reader()
    reader.start()
    assert reader.done.wait(30)
    return reader


SQUEEZED = "squeezed"


def test_a_squeeze_that_lets_some_callers_in_is_logged_once(
    small_server: LocalCluster, django_db_blocker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """While the server stays full, a caller let into the one free slot does not end the episode."""
    node = small_server.primary
    readers: list[Reader] = []
    with (
        django_db_blocker.unblock(),
        caplog.at_level(logging.WARNING, "django_pg_resilience"),
        item_alias(SQUEEZED, node, CONN_MAX_AGE=60, OPTIONS={"resilience": {"deadline": 0.3}}),
    ):
        connections[SQUEEZED].close()
        held, _ = fill_all_but(node, 1)
        try:
            held.append(connect_when_free(node))  # now full
            readers.append(read_once())  # refused: the episode starts
            held.pop().close()
            readers.append(read_once())  # gets the free slot, and keeps it
            readers.append(read_once())  # refused again: the server is still full
        finally:
            for reader in readers:
                reader.release.set()
                reader.join(30)
            for connection in held:
                connection.close()
    outcomes = [reader.outcome for reader in readers]
    assert isinstance(outcomes[0], DatabaseBusy), outcomes
    assert outcomes[1] == 0, outcomes
    assert isinstance(outcomes[2], DatabaseBusy), outcomes
    lines = [r.getMessage() for r in caplog.records if BUSY_EPISODE in r.getMessage()]
    assert len(lines) == 1, lines
