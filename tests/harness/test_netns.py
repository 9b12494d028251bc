"""A peer that sends nothing at all: a primary in its own network namespace, silenced for real."""

from __future__ import annotations

import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import pq

from django_pg_resilience.testing import LocalCluster, NetworkNamespace, netns_unavailable_reason

SILENCE = 1.5  # seconds a silenced peer is watched for any sign of life


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _send(conn: pq.PGconn, query: bytes) -> None:
    conn.send_query(query)  # raises if it cannot
    while conn.flush():  # 1 while libpq still holds bytes to send
        select.select([], [conn.socket], [], 1)


def _readable_within(conn: pq.PGconn, timeout: float) -> bool:
    """Whether anything (data, EOF, a reset) arrives on the connection's socket in time."""
    readable, _, errored = select.select([conn.socket], [], [conn.socket], timeout)
    return bool(readable or errored)


def _result(conn: pq.PGconn, timeout: float) -> pq.PGresult:
    deadline = time.monotonic() + timeout
    while conn.is_busy():
        assert _readable_within(conn, deadline - time.monotonic()), "no answer"
        conn.consume_input()
    result = conn.get_result()
    assert result is not None
    while conn.get_result() is not None:
        pass
    return result


def test_the_primary_answers_through_the_veth_and_the_standby_streams_from_it(
    pg_netns_cluster: LocalCluster,
) -> None:
    cluster = pg_netns_cluster
    namespace, primary, standby = cluster.namespace, cluster.primary, cluster.standbys[0]
    assert namespace is not None and primary.namespace is namespace
    assert primary.host == namespace.address != "127.0.0.1"

    (server, client), *_ = primary.query(
        "SELECT host(inet_server_addr()), host(inet_client_addr())"
    )
    assert (server, client) == (namespace.address, namespace.host_address)
    primary.query("CREATE TABLE through_veth (x int)")
    primary.query("INSERT INTO through_veth VALUES (1)")
    cluster.wait_for_replay(standby)
    assert standby.query("SELECT x FROM through_veth") == [(1,)]
    # The server runs inside the namespace, not beside it.
    postmaster = (primary.data_dir / "postmaster.pid").read_text().split()[0]
    inside = ["ip", "netns", "pids", namespace.name]
    assert postmaster in subprocess.run(inside, capture_output=True, text=True).stdout.split()


def test_a_silenced_peer_sends_nothing_then_answers_again_once_restored(
    pg_netns_cluster: LocalCluster,
) -> None:
    namespace, primary = pg_netns_cluster.namespace, pg_netns_cluster.primary
    assert namespace is not None
    conn = pq.PGconn.connect(f"{primary.dsn} connect_timeout=5".encode())
    # Nothing ACKs for a silent peer, so the kernel gives up on unacknowledged data.
    bounded = pq.PGconn.connect(f"{primary.dsn} connect_timeout=5 tcp_user_timeout=500".encode())
    assert conn.status == bounded.status == pq.ConnStatus.OK
    conn.nonblocking = bounded.nonblocking = 1
    try:
        # Healthy: the same probe sees the answer.
        _send(conn, b"SELECT 1")
        assert _result(conn, 5).get_value(0, 0) == b"1"

        namespace.silence()
        _send(conn, b"SELECT 2")
        _send(bounded, b"SELECT 2")
        # No answer, no error, no reset: nothing at all arrives, and the socket stays open.
        assert not _readable_within(conn, SILENCE)
        assert conn.status == pq.ConnStatus.OK
        # Unlike behind a user-space proxy's blackhole, tcp_user_timeout notices it.
        assert _readable_within(bounded, 30)
        with pytest.raises(psycopg.OperationalError):
            bounded.consume_input()

        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="timeout"):
            psycopg.connect(primary.dsn, connect_timeout=1)
        assert time.monotonic() - started >= 0.9  # it waited for connect_timeout: no refusal

        namespace.restore()
        # TCP retransmits the held-back answer; the open connection carries on.
        assert _result(conn, 30).get_value(0, 0) == b"2"
        assert primary.query("SELECT 3") == [(3,)]
    finally:
        namespace.restore()
        conn.finish()
        bounded.finish()


def test_silence_reaches_the_standby_too(pg_netns_cluster: LocalCluster) -> None:
    """A dead VM stops streaming as well: WAL written meanwhile arrives only after restore."""
    cluster = pg_netns_cluster
    namespace, primary, standby = cluster.namespace, cluster.primary, cluster.standbys[0]
    assert namespace is not None
    written = "SELECT to_regclass('written_in_silence') IS NOT NULL"
    conn = pq.PGconn.connect(f"{primary.dsn} connect_timeout=5".encode())
    conn.nonblocking = 1
    try:
        namespace.silence()
        _send(conn, b"CREATE TABLE written_in_silence (x int)")  # reaches it; no answer back
        deadline = time.monotonic() + SILENCE
        while time.monotonic() < deadline:
            assert standby.query(written) == [(False,)]
            time.sleep(0.1)
        namespace.restore()
        assert _result(conn, 30).status == pq.ExecStatus.COMMAND_OK
        cluster.wait_for_replay(standby, timeout=60)
        assert standby.query(written) == [(True,)]
    finally:
        namespace.restore()
        conn.finish()


def test_close_leaves_no_namespace_no_link_and_no_server() -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster = LocalCluster(standbys=0, netns=True).start()
    namespace = cluster.namespace
    assert namespace is not None
    assert namespace.name in _namespaces() and _link_exists(namespace.host_link)
    cluster.close()
    assert namespace.name not in _namespaces()
    assert not _link_exists(namespace.host_link)
    assert not cluster.base_dir.exists()


def test_a_killed_owner_leaves_no_namespace_and_no_process_inside(tmp_path: Path) -> None:
    """The reaper kills what runs in the namespace and deletes it when its owner dies."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    script = tmp_path / "owner.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, subprocess
            from django_pg_resilience.testing import NetworkNamespace
            namespace = NetworkNamespace(teardown_grace=0.5).start()
            inside = subprocess.Popen([*namespace.exec_prefix, "sleep", "600"])
            print(namespace.name, namespace.host_link, inside.pid, flush=True)
            os._exit(1)  # no close(): like a SIGKILL
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    name, link, pid = out.stdout.split()
    deadline = time.monotonic() + 30
    while (name in _namespaces() or _link_exists(link)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert name not in _namespaces()
    assert not _link_exists(link)
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z"  # gone, or a reaped-late zombie


def test_a_standalone_namespace_can_be_silenced_and_restored() -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with NetworkNamespace() as namespace:
        route = ["ip", "-n", namespace.name, "route", "show", "type", "blackhole"]
        namespace.silence()
        assert namespace.silenced
        assert (
            namespace.host_address in subprocess.run(route, capture_output=True, text=True).stdout
        )
        namespace.silence()  # twice is harmless
        namespace.restore()
        assert not namespace.silenced
        assert subprocess.run(route, capture_output=True, text=True).stdout.strip() == ""
    assert namespace.name not in _namespaces()


def test_without_ip_the_reason_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert netns_unavailable_reason() == "iproute2's `ip` is missing: apt-get install iproute2"
