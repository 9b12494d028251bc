"""LocalCluster against real servers: replication, crash + promote, rewind, sync, cleanup."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest

from django_pg_resilience.testing import LocalCluster, PostgresNotFound, find_bindir
from tests.harness.owner import killed_owner


def test_row_written_on_primary_is_read_on_standby(pg_cluster: LocalCluster) -> None:
    primary, standby = pg_cluster.primary, pg_cluster.standbys[0]
    primary.query("CREATE TABLE IF NOT EXISTS harness_rows (value text)")
    primary.query("INSERT INTO harness_rows VALUES ('from the primary')")
    pg_cluster.wait_for_replay(standby)

    assert standby.query("SELECT value FROM harness_rows") == [("from the primary",)]
    assert primary.role == "primary"
    assert standby.role == "standby"


def test_standby_refuses_writes(pg_cluster: LocalCluster) -> None:
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        pg_cluster.standbys[0].query("CREATE TABLE nope (x int)")


def test_kill_and_promote_make_the_standby_the_writable_primary(
    pg_fresh_cluster: LocalCluster,
) -> None:
    cluster = pg_fresh_cluster
    old, standby = cluster.primary, cluster.standbys[0]
    old.query("CREATE TABLE t (x int)")
    old.query("INSERT INTO t VALUES (1)")
    cluster.wait_for_replay(standby)

    cluster.kill(old)
    new = cluster.promote(standby)

    assert new is standby and cluster.primary is new
    assert new.role == "primary"
    new.query("INSERT INTO t VALUES (2)")
    assert new.query("SELECT x FROM t ORDER BY x") == [(1,), (2,)]
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(old.dsn, connect_timeout=2)
    assert not old.is_running()


def test_rejoin_as_standby_follows_the_new_primary(pg_fresh_cluster: LocalCluster) -> None:
    cluster = pg_fresh_cluster
    old, standby = cluster.primary, cluster.standbys[0]
    old.query("CREATE TABLE t (x int)")
    cluster.wait_for_replay(standby)
    cluster.kill(old)
    new = cluster.promote(standby)
    new.query("INSERT INTO t VALUES (42)")

    cluster.rejoin_as_standby(old)
    cluster.wait_for_replay(old)

    assert old.role == "standby"
    assert old.query("SELECT x FROM t") == [(42,)]
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        old.query("INSERT INTO t VALUES (1)")


def test_fast_stop_and_start_keep_the_data(pg_fresh_cluster: LocalCluster) -> None:
    cluster = pg_fresh_cluster
    primary = cluster.primary
    primary.query("CREATE TABLE t (x int)")
    primary.query("INSERT INTO t VALUES (7)")
    cluster.stop(primary, "fast")
    assert not primary.is_running()
    cluster.start(primary)
    assert primary.query("SELECT x FROM t") == [(7,)]
    with pytest.raises(ValueError, match="smart, fast or immediate"):
        cluster.stop(primary, "gently")


def test_set_synchronous_makes_commits_wait_for_the_standby(
    pg_fresh_cluster: LocalCluster,
) -> None:
    cluster = pg_fresh_cluster
    standby = cluster.standbys[0]
    cluster.set_synchronous(standby)
    rows = cluster.primary.query("SELECT application_name, sync_state FROM pg_stat_replication")
    assert rows == [(standby.name, "sync")]

    # With the synchronous standby gone a commit waits; it completes once the standby is back.
    cluster.stop(standby, "fast")
    committed = threading.Event()

    def commit() -> None:
        cluster.primary.query("CREATE TABLE waits (x int)")
        committed.set()

    writer = threading.Thread(target=commit, daemon=True)
    writer.start()
    assert not committed.wait(1.0), "a commit completed without its synchronous standby"
    cluster.start(standby)
    assert committed.wait(30), "the commit did not complete once the standby was back"

    cluster.set_synchronous(None)
    assert cluster.primary.query("SHOW synchronous_standby_names") == [("",)]
    cluster.primary.query("CREATE TABLE no_wait (x int)")


def test_wait_for_replay_times_out_when_replay_is_paused(pg_fresh_cluster: LocalCluster) -> None:
    cluster = pg_fresh_cluster
    standby = cluster.standbys[0]
    standby.query("SELECT pg_wal_replay_pause()")
    cluster.primary.query("CREATE TABLE t (x int)")
    with pytest.raises(TimeoutError, match="did not replay"):
        cluster.wait_for_replay(standby, timeout=0.5)
    standby.query("SELECT pg_wal_replay_resume()")
    cluster.wait_for_replay(standby, timeout=10)


def test_create_user_has_a_password(pg_fresh_cluster: LocalCluster) -> None:
    cluster = pg_fresh_cluster
    cluster.create_user("app", "s3cret")
    primary = cluster.primary
    with psycopg.connect(primary.dsn_for("app", "s3cret"), connect_timeout=2) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(primary.dsn_for("app", "wrong"), connect_timeout=2)


def _postgres_processes_under(base: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(base) in line]


def test_close_leaves_no_process_and_no_directory() -> None:
    cluster = LocalCluster(standbys=1).start()
    base = cluster.base_dir
    assert _postgres_processes_under(base)
    cluster.close()
    assert not base.exists()
    assert _postgres_processes_under(base) == []
    cluster.close()  # idempotent


def test_an_exception_in_the_with_block_still_cleans_up() -> None:
    with pytest.raises(ZeroDivisionError), LocalCluster(standbys=0) as cluster:
        base = cluster.base_dir
        _ = 1 / 0
    assert not base.exists()
    assert _postgres_processes_under(base) == []


def test_a_killed_test_process_leaves_nothing_behind() -> None:
    """The reapers clean up when the owning process dies without closing: its servers, their
    directory and the initdb template it copied them from (atexit does not run)."""
    script = """
        import os, sys
        from django_pg_resilience.testing import LocalCluster
        cluster = LocalCluster(standbys=0).start()
        print(cluster.base_dir, flush=True)
        os._exit(1)  # no close(), no atexit: like a SIGKILL
        """
    with killed_owner(script) as (out, tmp):
        base = Path(out.stdout.strip())
        assert base.parent == tmp and base.name.startswith("pg-resilience-")
        assert len(list(tmp.iterdir())) == 2  # the cluster's directory and the template
        deadline = time.monotonic() + 30
        while (any(tmp.iterdir()) or _postgres_processes_under(base)) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert list(tmp.iterdir()) == []
        assert _postgres_processes_under(base) == []


def test_missing_postgres_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_BINDIR", "/nonexistent")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("glob.glob", lambda pattern: [])
    with pytest.raises(PostgresNotFound, match="apt-get install postgresql"):
        find_bindir()


def test_pg_bindir_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    real = find_bindir()
    monkeypatch.setenv("PG_BINDIR", str(real))
    assert find_bindir() == real
    assert os.access(real / "pg_ctl", os.X_OK)
