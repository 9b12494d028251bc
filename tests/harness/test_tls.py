"""LocalCluster(tls=True): TLS only, as on a managed database, verified against its CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from django_pg_resilience.testing import EndpointProxy, LocalCluster


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(standbys=1, tls=True) as cluster:
        yield cluster


def _ssl_in_use(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None
    return bool(row[0])


def test_plain_tcp_is_refused(tls_cluster: LocalCluster) -> None:
    primary = tls_cluster.primary
    with pytest.raises(psycopg.OperationalError, match=r"no encryption|reject"):
        psycopg.connect(primary.dsn, sslmode="disable", connect_timeout=2)


def test_verify_full_through_the_endpoint_uses_tls(tls_cluster: LocalCluster) -> None:
    params = tls_cluster.tls_params()
    assert params["sslmode"] == "verify-full"
    assert Path(params["sslrootcert"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    with (
        EndpointProxy(tls_cluster.primary) as endpoint,
        psycopg.connect(
            host=endpoint.host, port=endpoint.port, user="postgres", dbname="postgres",
            connect_timeout=2, **params,
        ) as conn,
    ):  # fmt: skip
        assert _ssl_in_use(conn)
        assert conn.pgconn.ssl_in_use


def test_a_certificate_from_another_authority_is_rejected(
    tls_cluster: LocalCluster, tmp_path: Path
) -> None:
    import trustme

    other_ca = tmp_path / "other-ca.crt"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(
            tls_cluster.primary.dsn, sslmode="verify-full", sslrootcert=str(other_ca),
            connect_timeout=2,
        )  # fmt: skip


def test_the_standby_streams_over_tls(tls_cluster: LocalCluster) -> None:
    rows = tls_cluster.primary.query(
        "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)"
    )
    assert rows == [(True,)]
