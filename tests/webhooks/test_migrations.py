"""Migration 0003 on a table that already holds events (a live install upgrading)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connections

from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias

ALIAS = "webhooks_migrations"
APP = "django_pg_resilience"


@pytest.fixture
def at_0002(pg_fresh_cluster: LocalCluster, django_db_blocker: object) -> Iterator[str]:
    with (
        django_db_blocker.unblock(),  # type: ignore[attr-defined]
        database_alias(ALIAS, pg_fresh_cluster.endpoint, OPTIONS={"connect_timeout": 2}),
    ):
        call_command("migrate", APP, "0002", database=ALIAS, verbosity=0)
        yield ALIAS


def _indexes(alias: str) -> dict[str, tuple[bool, str]]:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'django_pg_resilience_webhookevent'::regclass"
        )
        return {name: (valid, definition) for name, valid, definition in cursor.fetchall()}


def test_0003_applies_to_a_table_with_rows_and_can_be_run_again(at_0002: str) -> None:
    with connections[at_0002].cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_pg_resilience_webhookevent (source, key, event_id, topic, "
            "account, status, attempts, received_at, last_error, payload, headers, handler, "
            "body_sha256) SELECT 'shopify', 'k' || n, '', 'orders/create', 'shop', "
            "'succeeded', 1, now(), '', '{}', '{}', '', md5(n::text) || md5(n::text) "
            "FROM generate_series(1, 500) AS n"
        )
    call_command("migrate", APP, "0003", database=at_0002, verbosity=0)

    indexes = _indexes(at_0002)
    assert "pg_resilience_webhook_body" not in indexes
    scope_valid, scope = indexes["pg_resilience_webhook_body_scope"]
    strict_valid, strict = indexes["pg_resilience_webhook_body_strict"]
    assert scope_valid and strict_valid
    assert "UNIQUE" in scope and "(source, body_sha256, account, topic)" in scope
    assert "UNIQUE" in strict and "body_strict" in strict
    with connections[at_0002].cursor() as cursor:
        cursor.execute(
            "SELECT count(*), bool_or(body_replayed), bool_or(body_strict) "
            "FROM django_pg_resilience_webhookevent"
        )
        assert cursor.fetchone() == (500, False, False)


def test_0003_completes_after_an_interrupted_run(at_0002: str) -> None:
    # What a migrate killed half-way leaves: one column added, an index build
    # that failed (invalid), and no record of 0003.
    with connections[at_0002].cursor() as cursor:
        cursor.execute(
            "ALTER TABLE django_pg_resilience_webhookevent "
            "ADD COLUMN body_replayed boolean DEFAULT false NOT NULL"
        )
        cursor.execute(
            "CREATE UNIQUE INDEX pg_resilience_webhook_body_scope ON "
            "django_pg_resilience_webhookevent (source)"
        )
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = 'pg_resilience_webhook_body_scope'::regclass"
        )
    call_command("migrate", APP, "0003", database=at_0002, verbosity=0)
    valid, definition = _indexes(at_0002)["pg_resilience_webhook_body_scope"]
    assert valid and "(source, body_sha256, account, topic)" in definition
