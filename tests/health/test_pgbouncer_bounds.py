"""The PgBouncer probe is bounded: a DSN's connect_timeout, and a console that stops answering."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from django_pg_resilience.health.pgbouncer import pgbouncer_params, probe_pgbouncer
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.pgbouncer import PgBouncer, find_pgbouncer

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


class SilentAfterLogin:
    """Speaks PostgreSQL's protocol up to "ready for query", then never answers a query:
    a PgBouncer (or the network path to it) that hangs mid-session."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.logged_in = threading.Event()
        self.stop = threading.Event()
        self.clients: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.clients.append(client)
            threading.Thread(target=self._session, args=(client,), daemon=True).start()

    def _session(self, client: socket.socket) -> None:
        try:
            while True:
                length, code = struct.unpack("!ii", _read(client, 8))
                _read(client, length - 8)
                if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                    client.sendall(b"N")  # no encryption: the startup message comes next
                    continue
                break
            messages = [
                b"R" + struct.pack("!ii", 8, 0),  # AuthenticationOk
                _parameter(b"client_encoding", b"UTF8"),
                _parameter(b"server_version", b"1.24.0/bouncer"),
                b"K" + struct.pack("!iii", 12, 4242, 1),  # BackendKeyData
                b"Z" + struct.pack("!i", 5) + b"I",  # ReadyForQuery, idle
            ]
            client.sendall(b"".join(messages))
            self.logged_in.set()
            self.stop.wait()  # the query is read by nobody and answered never
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for client in self.clients:
            client.close()


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


def _parameter(name: bytes, value: bytes) -> bytes:
    body = name + b"\0" + value + b"\0"
    return b"S" + struct.pack("!i", len(body) + 4) + body


@pytest.fixture
def silent_console() -> Iterator[SilentAfterLogin]:
    server = SilentAfterLogin()
    yield server
    server.close()


def test_a_console_that_stops_answering_is_cut_at_the_timeout(
    silent_console: SilentAfterLogin,
) -> None:
    params = pgbouncer_params("stuck", f"host=127.0.0.1 port={silent_console.port} user=stats")
    answers: list[dict[str, Any]] = []
    prober = threading.Thread(
        target=lambda: answers.append(probe_pgbouncer("stuck", params, timeout=1.0)), daemon=True
    )
    prober.start()
    # Generous: the bound is about 1 s; without it the probe waits as long as TCP lets it.
    prober.join(60)
    assert silent_console.logged_in.is_set(), "the probe never got past the login"
    assert not prober.is_alive(), "the probe still waits for a console that never answers"
    [facts] = answers
    assert facts["error"] and "no answer from the server within" in facts["error"]


def test_a_dsn_with_its_own_connect_timeout_is_probed(pg_cluster: LocalCluster) -> None:
    try:
        find_pgbouncer()
    except RuntimeError as exc:  # pragma: no cover - the bootstrap installs it
        pytest.skip(f"pgbouncer is not installed: {exc}")
    with PgBouncer(pg_cluster.primary) as bouncer:
        params = pgbouncer_params("sidecar", f"{bouncer.admin_dsn} connect_timeout=7")
        facts = probe_pgbouncer("sidecar", params, timeout=2.0)
    assert facts["error"] is None
    assert facts["config"]["pool_mode"] == "transaction"
