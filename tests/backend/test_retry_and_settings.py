"""atomic_with_retry's contract and the libpq defaults the backend adds."""

from __future__ import annotations

import pytest
from django.db import connections, transaction

from django_pg_resilience.errors import NestedRetryError
from django_pg_resilience.retry import atomic_with_retry
from django_pg_resilience.testing.django import database_alias


class _Address:
    host = "127.0.0.1"
    port = 1


def test_connection_params_add_safe_libpq_defaults_unless_set() -> None:
    options = {"keepalives_idle": 30, "resilience": {"connect_timeout": 3}}
    with database_alias("params", _Address(), OPTIONS=options):
        params = connections["params"].get_connection_params()
    assert "resilience" not in params
    assert params["connect_timeout"] == 3
    assert params["keepalives"] == 1
    assert params["keepalives_idle"] == 30  # the user's value wins
    assert params["tcp_user_timeout"] == 10_000  # milliseconds
    assert "target_session_attrs" not in params  # one host
    assert options == {"keepalives_idle": 30, "resilience": {"connect_timeout": 3}}


@pytest.mark.django_db
def test_retry_inside_an_outer_atomic_block_is_refused() -> None:
    with transaction.atomic(), pytest.raises(NestedRetryError, match="outermost"):
        atomic_with_retry(lambda: None)()


@pytest.mark.django_db(transaction=True)
def test_conflicts_are_re_run_and_other_errors_are_not() -> None:
    attempts = {"conflict": 0, "other": 0}

    def conflict_once() -> str:
        attempts["conflict"] += 1
        if attempts["conflict"] == 1:
            with connections["default"].cursor() as cursor:
                cursor.execute(
                    "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$"
                )
        return "done"

    def broken() -> None:
        attempts["other"] += 1
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1/0")

    assert atomic_with_retry(conflict_once, sleep=lambda _: None)() == "done"
    with pytest.raises(Exception, match="division by zero"):
        atomic_with_retry(broken)()
    assert attempts == {"conflict": 2, "other": 1}


def test_io_timeout_is_off_by_default_and_its_error_means_a_lost_connection() -> None:
    from django_pg_resilience import conf
    from django_pg_resilience.backend.connection import IoTimeout, ResilientConnection
    from django_pg_resilience.errors import ErrorKind, classify

    assert conf.BackendSettings().io_timeout == 0.0
    assert ResilientConnection.io_timeout is None
    assert classify(IoTimeout("no answer within io_timeout")) is ErrorKind.CONNECTION
