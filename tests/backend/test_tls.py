"""The backend over TLS (sslmode=verify-full) against TLS-only nodes, as on a managed database.

The failover cases of test_failover.py also run over TLS (parametrized there); these
are the faults that only exist with TLS: a reset in the middle of the TLS handshake,
and a wrong certificate authority.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError, connections

from django_pg_resilience import stats
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
from tests.backend.conftest import item_alias
from tests.testapp.models import Item


@pytest.fixture
def tls_cluster(django_db_blocker: Any) -> Iterator[LocalCluster]:
    with LocalCluster(standbys=0, tls=True) as cluster, django_db_blocker.unblock():
        yield cluster


class HandshakeBreaker:
    """Says yes to TLS (the 'S' answer to SSLRequest), reads the ClientHello, then RSTs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.listener.getsockname()
        self.broken = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError):
                client.recv(8)  # SSLRequest
                client.sendall(b"S")
                client.recv(4096)  # the ClientHello
                self.broken += 1
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            client.close()

    def close(self) -> None:
        self.listener.close()


def test_a_reset_during_the_tls_handshake_is_retried_until_the_server_is_back(
    tls_cluster: LocalCluster,
) -> None:
    breaker = HandshakeBreaker()
    endpoint = tls_cluster.endpoint
    options = {**tls_cluster.tls_params(), "resilience": {"deadline": 20}}
    try:
        with item_alias("ours", endpoint, OPTIONS=options):
            connections["ours"].close()
            endpoint.point_to((breaker.host, breaker.port))
            moved = threading.Event()

            def move_back() -> None:
                deadline = time.monotonic() + 15
                while breaker.broken < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
                endpoint.point_to(tls_cluster.primary)
                moved.set()

            mover = threading.Thread(target=move_back)
            mover.start()
            assert Item.objects.using("ours").count() == 0
            mover.join()
            assert moved.is_set()
            assert breaker.broken >= 2
            with connections["ours"].cursor() as cursor:
                cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                assert cursor.fetchone() == (True,)
            assert stats.snapshot()["connect_attempts"]["ours"] >= 3
    finally:
        breaker.close()


def test_plain_tcp_against_a_tls_only_node_is_refused(tls_cluster: LocalCluster) -> None:
    options = {"sslmode": "disable", "resilience": {"deadline": 0.5}}
    with (
        database_alias("ours", tls_cluster.endpoint, OPTIONS=options),
        pytest.raises(OperationalError, match="no encryption"),
    ):
        connections["ours"].ensure_connection()


def test_a_wrong_certificate_authority_fails_at_once_with_a_clear_error(
    tls_cluster: LocalCluster, tmp_path: Any
) -> None:
    import trustme

    other_ca = tmp_path / "other-ca.crt"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    options = {"sslmode": "verify-full", "sslrootcert": str(other_ca)}
    with (
        database_alias("ours", tls_cluster.endpoint, OPTIONS=options),
        pytest.raises(OperationalError, match="certificate verify failed"),
    ):
        connections["ours"].ensure_connection()
    assert stats.snapshot()["connect_attempts"]["ours"] == 1
