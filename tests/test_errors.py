"""What an error means: the one table every part of the package asks (errors.classify)."""

from __future__ import annotations

import psycopg
import pytest
from django.db import IntegrityError, InterfaceError, OperationalError
from psycopg_pool import PoolTimeout

from django_pg_resilience.backend.base import ReadOnlySession
from django_pg_resilience.backend.connection import IoTimeout
from django_pg_resilience.errors import (
    DatabaseUnavailable,
    ErrorKind,
    FailoverError,
    classify,
    is_availability_error,
    sqlstate_of,
)


def wrapped(
    driver_error: BaseException, django_class: type[Exception] = OperationalError
) -> Exception:
    """As Django's wrap_database_errors raises it: ``raise dj_exc from driver_exc``."""
    error = django_class(str(driver_error))
    error.__cause__ = driver_error
    return error


@pytest.mark.parametrize(
    ("driver_error", "kind"),
    [
        (psycopg.errors.AdminShutdown(), ErrorKind.CONNECTION),
        (psycopg.errors.CrashShutdown(), ErrorKind.CONNECTION),
        (psycopg.errors.CannotConnectNow(), ErrorKind.CONNECTION),
        (psycopg.errors.ConnectionFailure(), ErrorKind.CONNECTION),
        (
            psycopg.OperationalError("server closed the connection unexpectedly"),
            ErrorKind.CONNECTION,
        ),
        (psycopg.errors.ConnectionTimeout("connection timeout expired"), ErrorKind.CONNECTION),
        (psycopg.errors.ReadOnlySqlTransaction(), ErrorKind.READ_ONLY),
        (psycopg.errors.SerializationFailure(), ErrorKind.TRANSACTION_CONFLICT),
        (psycopg.errors.DeadlockDetected(), ErrorKind.TRANSACTION_CONFLICT),
        (psycopg.errors.InvalidPassword(), ErrorKind.CONFIGURATION),
        (psycopg.errors.InvalidCatalogName(), ErrorKind.CONFIGURATION),
        (
            psycopg.OperationalError('password authentication failed for user "app"'),
            ErrorKind.CONFIGURATION,
        ),
        (psycopg.errors.UniqueViolation(), ErrorKind.OTHER),
        (psycopg.errors.SyntaxError(), ErrorKind.OTHER),
        # The backend's own driver-level errors (defined in this package) count as driver errors.
        (IoTimeout("no answer in 3 s"), ErrorKind.CONNECTION),
        (ReadOnlySession("read-only"), ErrorKind.READ_ONLY),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else value.name,
)
def test_driver_errors_under_django_errors(driver_error: BaseException, kind: ErrorKind) -> None:
    assert classify(wrapped(driver_error)) is kind


def test_availability_errors_are_connection_class_only() -> None:
    assert is_availability_error(FailoverError("lost"))
    assert is_availability_error(DatabaseUnavailable("down", retry_after=2))
    assert is_availability_error(wrapped(psycopg.errors.AdminShutdown()))
    assert is_availability_error(wrapped(IoTimeout("no answer")))
    assert is_availability_error(wrapped(PoolTimeout("no connection in 2 s")))
    assert is_availability_error(InterfaceError("connection already closed"))

    assert not is_availability_error(wrapped(psycopg.errors.UniqueViolation(), IntegrityError))
    assert not is_availability_error(wrapped(psycopg.errors.InvalidPassword()))
    assert not is_availability_error(ValueError("a bug"))


def test_sqlstate_is_found_under_the_django_error() -> None:
    assert sqlstate_of(wrapped(psycopg.errors.ReadOnlySqlTransaction())) == "25006"
    assert sqlstate_of(ValueError("no state")) is None
