"""PgBouncer (transaction pooling) in front of the endpoint, through a real failover."""

from __future__ import annotations

import psycopg
import pytest

from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.pgbouncer import FAILOVER_SETTINGS, PgBouncer, find_pgbouncer

try:
    find_pgbouncer()
except RuntimeError as exc:  # pragma: no cover - the bootstrap installs it
    pytest.skip(f"pgbouncer is not installed: {exc}", allow_module_level=True)


def connect(bouncer: PgBouncer) -> psycopg.Connection:
    # prepare_threshold=None: transaction pooling cannot keep prepared statements.
    return psycopg.connect(
        host=bouncer.host,
        port=bouncer.port,
        user="postgres",
        dbname="postgres",
        autocommit=True,
        connect_timeout=3,
        prepare_threshold=None,
    )


def test_pgbouncer_forwards_and_follows_the_endpoint(pg_fresh_cluster: LocalCluster) -> None:
    cluster = pg_fresh_cluster
    # Lowered on purpose: with PgBouncer's default 15 s login retry the loop
    # below would wait out one retry period before the new primary is tried.
    with PgBouncer(cluster.endpoint, server_login_retry=1, server_connect_timeout=2) as bouncer:
        with connect(bouncer) as conn:
            conn.execute("CREATE TABLE t (x int)")
            assert conn.execute("SELECT inet_server_port()").fetchone() == (cluster.primary.port,)
        cluster.wait_for_replay(cluster.standbys[0])

        client = connect(bouncer)  # a client connection that outlives the failover
        cluster.kill(cluster.primary)
        cluster.endpoint.point_to(cluster.promote(cluster.standbys[0]))

        # The client's connection to PgBouncer survives; its first transaction may fail
        # while PgBouncer notices its server connection is gone, the next one lands.
        result = None
        for _ in range(20):
            try:
                result = client.execute("INSERT INTO t VALUES (1) RETURNING inet_server_port()")
                break
            except psycopg.OperationalError:
                if client.closed:
                    client = connect(bouncer)
        assert result is not None and result.fetchone() == (cluster.primary.port,)
        client.close()


def test_close_stops_pgbouncer(pg_cluster: LocalCluster) -> None:
    bouncer = PgBouncer(pg_cluster.primary).start()
    port = bouncer.port
    bouncer.close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=port, user="postgres", connect_timeout=2)
    bouncer.close()


def test_bad_pool_mode_is_refused(pg_cluster: LocalCluster) -> None:
    with pytest.raises(ValueError, match="pool_mode"):
        PgBouncer(pg_cluster.primary, pool_mode="sometimes")


def show_config(bouncer: PgBouncer) -> dict[str, str]:
    with psycopg.connect(bouncer.admin_dsn, autocommit=True, connect_timeout=3) as admin:
        # The admin console speaks the simple query protocol only.
        rows = admin.cursor().execute("SHOW CONFIG", prepare=False).fetchall()
    return {str(row[0]): str(row[1]) for row in rows}


def test_pgbouncer_keeps_its_own_failover_defaults(pg_cluster: LocalCluster) -> None:
    with PgBouncer(pg_cluster.primary) as bouncer:
        config = show_config(bouncer)
    assert {name: config[name] for name in FAILOVER_SETTINGS} == {
        name: f"{value:g}" for name, value in FAILOVER_SETTINGS.items()
    }


def test_a_test_may_lower_the_failover_settings(pg_cluster: LocalCluster) -> None:
    with PgBouncer(pg_cluster.primary, server_login_retry=1, query_wait_timeout=5) as bouncer:
        config = show_config(bouncer)
    assert config["server_login_retry"] == "1"
    assert config["query_wait_timeout"] == "5"
    assert config["server_connect_timeout"] == "15"


def test_pgbouncer_keeps_answering_after_many_logins(pg_cluster: LocalCluster) -> None:
    # Each login and logout writes a log line; unread, they once filled a pipe
    # (64 KiB) and froze PgBouncer after a few hundred connections.
    with PgBouncer(pg_cluster.primary) as bouncer:
        for _ in range(600):
            with connect(bouncer) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
