"""What counts as a read that may be re-run after a reconnect, and what leaves session state."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_pg_resilience.backend.statements import is_read_statement, session_state_change


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
        "TABLE testapp_item",
        "SELECT count(*) AS n, max(x) FILTER (WHERE y > 0) FROM t",
        "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n",
        "WITH n (i) AS MATERIALIZED (SELECT 1) SELECT i FROM n",
        "SELECT end_position FROM (SELECT 1) AS written (end_position)",
        "SELECT CAST(x AS numeric(10, 2)), x::varchar(3), x::character varying(4) FROM t",
        "SELECT a FROM t LEFT OUTER JOIN (SELECT 1 AS b) u ON (true)",
        "SELECT pg_catalog.upper(name), PG_CATALOG.lower(name) FROM t",
        'SELECT "count"(*) FROM t',
        "SELECT 'it''s pg_advisory_lock(1); DELETE FROM t' AS text",
        "SELECT E'\\' nextval(1)', $q$ pg_notify('c', 'x'); $q$, $$ INTO $$",
        "SELECT 1 -- FOR UPDATE; DELETE\n",
        "SELECT row_number() OVER (PARTITION BY a ORDER BY b DESC NULLS LAST) FROM t",
        "SELECT st_distance(a, b), jsonb_path_exists(j, '$.a'), json_build_object('a', 1)",
        "SELECT 'read_marker', pg_sleep(0.5), 42",
        "SELECT * FROM generate_series(1, 3) AS g (n)",
        "SELECT x FROM t WHERE y = ANY(%s) AND z IN (SELECT 1) AND EXISTS (SELECT 1)",
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
        "SELECT * FROM t FOR KEY SHARE OF t",
        "SELECT * INTO copy FROM t",
        "SELECT nextval('s')",
        "SELECT pg_advisory_lock(1)",
        "SELECT 1; DELETE FROM t",
        "CREATE TABLE t (x int)",
        "-- SELECT\nDELETE FROM t",
        "BEGIN",
        # Classified as reads by the old blocklist:
        "SELECT pg_try_advisory_lock(1)",
        "SELECT pg_try_advisory_xact_lock(1)",
        "SELECT pg_logical_emit_message(true, 'prefix', 'content')",
        "SELECT * FROM pg_create_logical_replication_slot('s', 'test_decoding')",
        # Unknown functions, schema-qualified or quoted:
        "SELECT my_function(1)",
        "SELECT public.count(*) FROM t",
        'SELECT "PG_ADVISORY_LOCK"(1)',
        'SELECT "pg_catalog"."pg_advisory_lock"(1)',
        "SELECT x FROM t WHERE x > (SELECT txid_current())",
        "SELECT st_addisonode('topo', 0, 'POINT(0 0)')",
        # Text that does not tokenize, or says nothing:
        "SELECT 'unterminated",
        "SELECT 1 /* unterminated",
        "",
        ";",
        "EXPLAIN ANALYZE DELETE FROM t",
    ],
)
def test_not_reads(sql: str) -> None:
    assert not is_read_statement(sql)


# --- side-effecting SELECTs, written every way PostgreSQL accepts them ------------------------

SIDE_EFFECTS = [
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_try_advisory_xact_lock",
    "pg_advisory_unlock_all",
    "pg_logical_emit_message",
    "pg_create_logical_replication_slot",
    "pg_create_physical_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "nextval",
    "setval",
    "pg_notify",
    "set_config",
    "setseed",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_promote",
    "pg_stat_reset",
    "lo_import",
    "lo_unlink",
    "lo_create",
    "dblink_exec",
    "txid_current",
    "pg_current_xact_id",
    "st_createtopogeo",
    "refresh_orders",  # an application's own function: unknown, so not a read
]

PLACES = [
    "SELECT {call}",
    "select {call} as locked",
    "SELECT x FROM t WHERE {call}",
    "SELECT * FROM (SELECT {call}) AS s",
    "WITH c AS (SELECT {call}) SELECT * FROM c",
    "WITH c (v) AS (SELECT {call}) SELECT v FROM c",
    "SELECT EXISTS (SELECT {call})",
    "SELECT x FROM t WHERE id IN (SELECT {call} FROM u)",
    "SELECT CASE WHEN y THEN {call} END FROM t",
    "SELECT count(*) FILTER (WHERE {call}) FROM t",
    "(SELECT 1) UNION ALL (SELECT {call})",
    "VALUES ({call})",
    "SELECT * FROM {call}",
    "SELECT coalesce({call}, 0)",
    "SELECT x FROM t ORDER BY {call}",
    "SELECT ({call})::text",
]

ARGUMENTS = ["()", "(1)", "( 1 , 2 )", "('a', 'b')", "(%s)", "(x::bigint)", "((SELECT 1))"]

GAPS = [" ", "\n", "\t ", " /* c */ ", " -- c\n", "/**/"]


def _random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))


@st.composite
def side_effecting_selects(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(SIDE_EFFECTS))
    quoted = draw(st.booleans())
    # Quoted names keep their case; unquoted ones may be written in any.
    name = f'"{name}"' if quoted else _random_case(draw, name)
    schema = draw(st.sampled_from(["", "pg_catalog.", '"pg_catalog".', "PG_Catalog . "]))
    gap = draw(st.sampled_from(["", " ", "\n", " /* x */ "]))
    call = f"{schema}{name}{gap}{draw(st.sampled_from(ARGUMENTS))}"
    sql = draw(st.sampled_from(PLACES)).format(call=call)
    sql = draw(st.sampled_from(GAPS)).join(sql.split(" "))
    keyword_case = draw(st.sampled_from([str.lower, str.upper, str]))
    return draw(st.sampled_from(["", " ", "/* app */ ", "-- app\n"])) + keyword_case(sql)


@given(side_effecting_selects())
def test_side_effecting_selects_are_never_reads(sql: str) -> None:
    assert not is_read_statement(sql), sql


SAFE_CALLS = ["count(*)", "upper(name)", "coalesce(a, b)", "now()", "pg_catalog.lower(name)"]


@st.composite
def reads_with_hidden_side_effects(draw: st.DrawFn) -> str:
    """Reads whose strings and comments mention side effects: text there is not a call."""
    hidden = draw(st.sampled_from(SIDE_EFFECTS)) + "(1); DELETE FROM t; SELECT 1 FOR UPDATE"
    inside = draw(
        st.sampled_from(
            [
                "'" + hidden.replace("'", "''") + "'",
                "$body$" + hidden + "$body$",
                "/* " + hidden + " */ 1",
            ]
        )
    )
    call = draw(st.sampled_from(SAFE_CALLS))
    sql = draw(st.sampled_from(PLACES)).format(call=call).replace("SELECT", f"SELECT {inside},", 1)
    return draw(st.sampled_from(GAPS)).join(sql.split(" "))


@given(reads_with_hidden_side_effects())
def test_side_effects_in_strings_and_comments_do_not_make_a_read_a_write(sql: str) -> None:
    assert is_read_statement(sql), sql


# --- session state ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SET search_path TO tenant_1, public", "SET search_path"),
        ("set session search_path = tenant_1", "SET search_path"),
        ("SET SCHEMA 'tenant_1'", "SET schema"),
        ("SET statement_timeout = 100", "SET statement_timeout"),
        ("SET TIME ZONE 'UTC'", "SET TIME ZONE"),
        ("SET ROLE app_reader", "SET ROLE"),
        ("SET SESSION ROLE app_reader", "SET ROLE"),
        ("SET SESSION AUTHORIZATION app", "SET SESSION AUTHORIZATION"),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "SET SESSION CHARACTERISTICS",
        ),
        ("RESET search_path", "RESET search_path"),
        ("RESET ALL", "RESET all"),
        ("SELECT set_config('search_path', 'tenant_1', false)", "set_config('search_path')"),
        ("SELECT set_config('search_path', %s, %s)", "set_config('search_path')"),
        ("SELECT pg_catalog.set_config(%s, %s, false)", "set_config(...)"),
        ("CREATE TEMP TABLE scratch (x int)", "CREATE TEMPORARY TABLE"),
        ("CREATE TEMPORARY TABLE scratch AS SELECT 1", "CREATE TEMPORARY TABLE"),
        ("CREATE GLOBAL TEMPORARY TABLE scratch (x int)", "CREATE TEMPORARY TABLE"),
        ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", "CREATE TEMPORARY VIEW"),
        ("CREATE TEMP SEQUENCE s", "CREATE TEMPORARY SEQUENCE"),
        ("CREATE TABLE IF NOT EXISTS pg_temp.scratch (x int)", "CREATE TABLE pg_temp"),
        ("SELECT * INTO TEMP scratch FROM t", "SELECT INTO TEMPORARY"),
        ("PREPARE find (int) AS SELECT * FROM t WHERE id = $1", "PREPARE"),
        ("LISTEN orders", "LISTEN"),
        ("SELECT pg_advisory_lock(1)", "session advisory lock (pg_advisory_lock)"),
        ("SELECT pg_try_advisory_lock(1, 2)", "session advisory lock (pg_try_advisory_lock)"),
        (
            'SELECT "pg_catalog"."pg_advisory_lock_shared"(1)',
            "session advisory lock (pg_advisory_lock_shared)",
        ),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "DECLARE ... WITH HOLD"),
        ("DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT 1", "DECLARE ... WITH HOLD"),
        ("LOAD 'auto_explain'", "LOAD"),
        ("SELECT 1; SET search_path TO x", "SET search_path"),
    ],
)
def test_session_state_changes(sql: str, reason: str) -> None:
    change = session_state_change(sql)
    assert change is not None
    assert change.startswith(reason), change


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT "testapp_item"."id" FROM "testapp_item"',
        "UPDATE t SET search_path = 1",
        "INSERT INTO settings (reset, temp, listen) VALUES (1, 2, 3)",
        "SET LOCAL search_path TO tenant_1",
        "SET LOCAL ROLE app",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET CONSTRAINTS ALL DEFERRED",
        "SELECT set_config('search_path', 'tenant_1', true)",
        "SELECT set_config('x', 'y', 'on')",
        "SELECT pg_advisory_xact_lock(1)",
        "SELECT pg_try_advisory_xact_lock_shared(1)",
        "SELECT pg_advisory_unlock(1)",
        "CREATE TABLE temp (x int)",
        "CREATE TABLE t (temp int)",
        "DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1",
        "DECLARE c CURSOR FOR SELECT 1 FROM hold",
        "PREPARE TRANSACTION 'tx1'",
        "UNLISTEN *",
        "SELECT 'SET search_path TO x', 'pg_advisory_lock(1)'",
        "-- SET search_path TO x\nSELECT 1",
    ],
)
def test_no_session_state_change(sql: str) -> None:
    assert session_state_change(sql) is None


@st.composite
def session_advisory_locks(draw: st.DrawFn) -> tuple[str, bool]:
    """A call to an advisory lock function, and whether it outlives the transaction."""
    kind = draw(st.sampled_from(["pg_advisory", "pg_try_advisory"]))
    xact = draw(st.booleans())
    name = f"{kind}{'_xact' if xact else ''}_lock{draw(st.sampled_from(['', '_shared']))}"
    name = f'"{name}"' if draw(st.booleans()) else _random_case(draw, name)
    schema = draw(st.sampled_from(["", "pg_catalog.", '"pg_catalog" . ']))
    call = f"{schema}{name}({draw(st.sampled_from(['1', '%s', '1, 2']))})"
    sql = draw(st.sampled_from(PLACES)).format(call=call)
    return draw(st.sampled_from(GAPS)).join(sql.split(" ")), not xact


@given(session_advisory_locks())
def test_only_session_advisory_locks_are_session_state(case: tuple[str, bool]) -> None:
    sql, outlives_transaction = case
    assert (session_state_change(sql) is not None) == outlives_transaction, sql


@st.composite
def set_statements(draw: st.DrawFn) -> tuple[str, bool]:
    """A SET statement in any spelling, and whether it outlives the transaction."""
    scope = draw(st.sampled_from(["", "SESSION ", "LOCAL "]))
    target = draw(
        st.sampled_from(
            ["search_path TO a", "search_path = 'a', b", "ROLE app", "myapp.tenant = '7'"]
        )
    )
    sql = draw(st.sampled_from(GAPS)).join(_random_case(draw, f"SET {scope}{target}").split(" "))
    prefix = draw(st.sampled_from(["", "/* tenant */ ", "-- x\n", "  "]))
    return prefix + sql, scope != "LOCAL "


@given(set_statements())
def test_set_is_session_state_unless_local(case: tuple[str, bool]) -> None:
    sql, outlives_transaction = case
    assert (session_state_change(sql) is not None) == outlives_transaction, sql
    assert not is_read_statement(sql)
