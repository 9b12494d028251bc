"""EndpointProxy with real PostgreSQL connections: move, blackhole, reset, delay."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from django_pg_resilience.testing import EndpointProxy, LocalCluster
from django_pg_resilience.testing import proxy as proxy_module


class FrozenClock:
    """Stands in for the proxy module's ``time``: monotonic() moves only when told."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)


def connect(endpoint: EndpointProxy, **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(
        host=endpoint.host,
        port=endpoint.port,
        user="postgres",
        dbname="postgres",
        autocommit=True,
        connect_timeout=kwargs.pop("connect_timeout", 2),
        **kwargs,
    )


def server_port(conn: psycopg.Connection) -> int:
    (port,) = conn.execute("SELECT inet_server_port()").fetchone()  # type: ignore[misc]
    return int(port)


def test_forwards_to_its_target(pg_endpoint: EndpointProxy, pg_cluster: LocalCluster) -> None:
    with connect(pg_endpoint) as conn:
        assert server_port(conn) == pg_cluster.primary.port


def test_point_to_moves_new_connections_and_cuts_open_ones(pg_cluster: LocalCluster) -> None:
    primary, standby = pg_cluster.primary, pg_cluster.standbys[0]
    with EndpointProxy(primary) as endpoint:
        before = connect(endpoint)
        assert server_port(before) == primary.port

        endpoint.point_to(standby)

        with pytest.raises(psycopg.OperationalError):
            before.execute("SELECT 1")
        with connect(endpoint) as after:
            assert server_port(after) == standby.port
        assert endpoint.target == (standby.host, standby.port)


def test_point_to_none_refuses_new_connections(pg_cluster: LocalCluster) -> None:
    with EndpointProxy(pg_cluster.primary) as endpoint:
        endpoint.point_to(None)
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            connect(endpoint)
        assert time.monotonic() - started < 1.5  # refused at once, not a timeout


def test_blackhole_makes_a_connect_time_out_not_fail(pg_endpoint: EndpointProxy) -> None:
    pg_endpoint.blackhole()
    started = time.monotonic()
    with pytest.raises(psycopg.errors.ConnectionTimeout):
        connect(pg_endpoint, connect_timeout=2)
    assert time.monotonic() - started >= 1.9


def test_blackhole_hangs_a_query_until_restore(pg_endpoint: EndpointProxy) -> None:
    conn = connect(pg_endpoint)
    pg_endpoint.blackhole()
    answered = threading.Event()
    result: list[object] = []

    def query() -> None:
        result.append(conn.execute("SELECT 40 + 2").fetchone())
        answered.set()

    worker = threading.Thread(target=query, daemon=True)
    worker.start()
    assert not answered.wait(1.0), "a blackholed endpoint answered"

    pg_endpoint.restore()
    assert answered.wait(10), "the query did not complete after restore"
    assert result == [(42,)]
    conn.close()


def test_reset_all_breaks_open_connections_at_once(pg_endpoint: EndpointProxy) -> None:
    conn = connect(pg_endpoint)
    pg_endpoint.reset_all()
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    assert time.monotonic() - started < 1.0
    assert conn.closed
    with connect(pg_endpoint) as fresh:  # new connections still work
        assert fresh.execute("SELECT 1").fetchone() == (1,)


def test_delay_adds_latency_to_each_round_trip(pg_endpoint: EndpointProxy) -> None:
    with connect(pg_endpoint) as conn:
        pg_endpoint.delay(100)
        started = time.monotonic()
        for _ in range(3):
            conn.execute("SELECT 1")
        slow = time.monotonic() - started
        pg_endpoint.restore()
        started = time.monotonic()
        for _ in range(3):
            conn.execute("SELECT 1")
        fast = time.monotonic() - started
    # 3 round trips x 2 directions x 100 ms
    assert slow >= 0.6
    assert fast < slow / 2


def test_many_connections_share_one_thread(pg_endpoint: EndpointProxy) -> None:
    threads_before = threading.active_count()
    conns = [connect(pg_endpoint) for _ in range(30)]
    try:
        assert all(c.execute("SELECT 1").fetchone() == (1,) for c in conns)
        assert threading.active_count() == threads_before
        assert pg_endpoint.open_connections >= 30
    finally:
        for c in conns:
            c.close()


def test_close_stops_the_thread_and_the_listener(pg_cluster: LocalCluster) -> None:
    endpoint = EndpointProxy(pg_cluster.primary).start()
    conn = connect(endpoint)
    port = endpoint.port
    names = {t.name for t in threading.enumerate()}
    assert f"EndpointProxy:{port}" in names
    endpoint.close()
    assert f"EndpointProxy:{port}" not in {t.name for t in threading.enumerate()}
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=port, user="postgres", connect_timeout=2)
    endpoint.close()  # idempotent


def test_cluster_endpoint_follows_a_failover_when_told(pg_fresh_cluster: LocalCluster) -> None:
    cluster = pg_fresh_cluster
    endpoint = cluster.endpoint
    with connect(endpoint) as conn:
        conn.execute("CREATE TABLE t (x int)")
    cluster.wait_for_replay(cluster.standbys[0])
    cluster.kill(cluster.primary)
    endpoint.point_to(cluster.promote(cluster.standbys[0]))
    with connect(endpoint) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        assert server_port(conn) == cluster.primary.port


def test_a_second_start_is_a_no_op(pg_cluster: LocalCluster) -> None:
    endpoint = EndpointProxy(pg_cluster.primary).start()
    port = endpoint.port
    with endpoint:  # the pattern that used to bind a second listener and a second loop
        assert endpoint.start() is endpoint
        assert endpoint.port == port
        loops = [t for t in threading.enumerate() if t.name == f"EndpointProxy:{port}"]
        assert len(loops) == 1
        for _ in range(3):
            with connect(endpoint) as conn:
                assert server_port(conn) == pg_cluster.primary.port
    with pytest.raises(RuntimeError, match="closed"):
        endpoint.start()


def test_a_crashed_loop_fails_the_next_call_loudly(
    pg_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EndpointProxy(pg_cluster.primary) as endpoint:
        conn = connect(endpoint)

        def crash() -> None:
            raise BufferError("Existing exports of data: object cannot be re-sized")

        # A bug in the loop, as the double start used to cause.
        monkeypatch.setattr(endpoint, "_release_delayed", crash)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")  # the crash resets the connection: no silent hang
        with pytest.raises(RuntimeError, match="loop thread crashed with BufferError"):
            endpoint.point_to(pg_cluster.primary)
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            connect(endpoint)  # refused at once: nothing listens any more
        assert time.monotonic() - started < 1.5
        conn.close()


def test_lifting_the_delay_keeps_a_stream_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Data sent after restore() must not overtake data the delay still holds."""
    # The proxy's clock stands still until the test moves it: "first " is held for as
    # long as the test needs, however slow the machine, so "second" always arrives
    # while it is held (the case under test) and is released only with it.
    clock = FrozenClock()
    monkeypatch.setattr(proxy_module, "time", clock)
    received = bytearray()
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def sink() -> None:
            conn, _ = server.accept()
            with conn:
                while chunk := conn.recv(65536):
                    received.extend(chunk)

        reader = threading.Thread(target=sink, daemon=True)
        reader.start()
        with (
            EndpointProxy(("127.0.0.1", port)) as endpoint,
            socket.create_connection((endpoint.host, endpoint.port)) as client,
        ):
            endpoint.delay(300)
            client.sendall(b"first ")
            wait_until(lambda: endpoint.delayed_bytes == len(b"first "), "first chunk held")
            endpoint.restore()
            client.sendall(b"second")
            # Queued behind what is still held, not sent ahead of it.
            wait_until(
                lambda: endpoint.delayed_bytes == len(b"first second"), "second held behind it"
            )
            assert not received
            clock.now += 1.0  # the loop wakes at least every 300 ms, and releases both
            wait_until(lambda: len(received) >= len(b"first second"), "both delivered")
        reader.join(10)
    assert bytes(received) == b"first second"
