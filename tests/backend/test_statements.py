"""What counts as a read that may be re-run after a reconnect."""

from __future__ import annotations

import pytest

from django_pg_resilience.backend.statements import is_read_statement


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT "testapp_item"."id" FROM "testapp_item" WHERE "name" = %s',
        "  select count(*) from t",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "/* comment */ SELECT 1;",
        "(SELECT 1) UNION (SELECT 2)",
        "SELECT updated_at FROM t",
        "VALUES (1)",
        "SHOW server_version",
    ],
)
def test_reads(sql: str) -> None:
    assert is_read_statement(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET x = 1",
        "DELETE FROM t",
        "WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED",
        "SELECT * FROM t FOR SHARE",
        "SELECT * INTO copy FROM t",
        "SELECT nextval('s')",
        "SELECT pg_advisory_lock(1)",
        "SELECT 1; DELETE FROM t",
        "CREATE TABLE t (x int)",
        "-- SELECT\nDELETE FROM t",
        "BEGIN",
    ],
)
def test_not_reads(sql: str) -> None:
    assert not is_read_statement(sql)
