"""Cursor wrappers that recover a statement from a lost connection when it is safe.

Rules (issue 3):

* Outside a transaction (autocommit), after a reconnect, a statement is re-run
  only when that is safe: it is a read (see :mod:`.statements`), or the failure
  proves it never ran (the connection was found closed before sending, or the
  server refused it with 25006 because it is a standby now).
* A write whose fate is unknown is never replayed: :class:`FailoverError`.
* Inside a transaction nothing is replayed: the connection is marked unusable
  and :class:`FailoverError` is raised.

Django's ``wrap_database_errors`` still translates every driver error; this
wrapper only looks at what comes out of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import DatabaseError
from django.db.backends.postgresql.base import CursorDebugWrapper
from django.db.backends.utils import CursorWrapper

from django_pg_resilience import stats
from django_pg_resilience.backend.statements import is_read_statement
from django_pg_resilience.errors import ErrorKind, FailoverError, classify

if TYPE_CHECKING:
    from django_pg_resilience.backend.base import DatabaseWrapper

__all__ = ["ResilientCursorDebugWrapper", "ResilientCursorWrapper"]

_RECOVERABLE = (ErrorKind.CONNECTION, ErrorKind.READ_ONLY)

# psycopg raises this before sending anything when the connection is already closed.
_NOT_SENT_MESSAGE = "the connection is closed"


def _never_ran(exc: BaseException, kind: ErrorKind) -> bool:
    if kind is ErrorKind.READ_ONLY:
        return True  # refused by a read-only server: nothing was applied
    cause = exc.__cause__ or exc
    return str(cause).startswith(_NOT_SENT_MESSAGE)


class ResilientCursorWrapper(CursorWrapper):
    """Django's CursorWrapper, plus recovery from a lost or demoted connection."""

    db: DatabaseWrapper

    def _execute(self, sql: Any, params: Any, *ignored_wrapper_args: Any) -> Any:
        try:
            return super()._execute(sql, params, *ignored_wrapper_args)  # type: ignore[misc]
        except DatabaseError as exc:
            kind = classify(exc)
            if kind not in _RECOVERABLE:
                raise
            return self._recover(exc, kind, sql, params, many=False)

    def _executemany(self, sql: Any, param_list: Any, *ignored_wrapper_args: Any) -> Any:
        try:
            return super()._executemany(sql, param_list, *ignored_wrapper_args)  # type: ignore[misc]
        except DatabaseError as exc:
            kind = classify(exc)
            if kind not in _RECOVERABLE:
                raise
            return self._recover(exc, kind, sql, param_list, many=True)

    def _recover(self, exc: Exception, kind: ErrorKind, sql: Any, params: Any, many: bool) -> Any:
        db = self.db
        alias = db.alias
        in_transaction = db.in_atomic_block or not db.autocommit
        db.connection_failed(read_only=kind is ErrorKind.READ_ONLY)
        if in_transaction:
            stats.increment("failover_errors", alias)
            raise FailoverError(
                f"The connection to database {alias!r} was lost inside a transaction; "
                "nothing of the transaction was kept. Retry the whole unit of work "
                "(see django_pg_resilience.retry.atomic_with_retry).",
                alias=alias,
            ) from exc
        settings = db.resilience
        safe = _never_ran(exc, kind) or (
            not many and settings.retry_reads and isinstance(sql, str) and is_read_statement(sql)
        )
        if not safe or getattr(self.cursor, "name", None):
            stats.increment("failover_errors", alias)
            raise FailoverError(
                f"The connection to database {alias!r} was lost while a write was in "
                "flight; it may or may not have been applied, so it was not re-run.",
                alias=alias,
            ) from exc
        return self._replay(exc, sql, params, many)

    def _replay(self, first_error: Exception, sql: Any, params: Any, many: bool) -> Any:
        db = self.db
        budget = db.retry_policy().start()
        error: Exception = first_error
        while True:
            stats.increment("retries", db.alias)
            # Connecting goes through the breaker: it waits for the outage within
            # the alias's deadline or raises DatabaseUnavailable.
            db.ensure_connection()
            with db.wrap_database_errors:
                self.cursor = db.create_cursor()
            try:
                if many:
                    return super()._executemany(sql, params)  # type: ignore[misc]
                return super()._execute(sql, params)  # type: ignore[misc]
            except DatabaseError as exc:
                kind = classify(exc)
                if kind not in _RECOVERABLE:
                    raise
                db.connection_failed(read_only=kind is ErrorKind.READ_ONLY)
                error = exc
                if budget.next_delay() is None:
                    stats.increment("failover_errors", db.alias)
                    raise FailoverError(
                        f"A read on database {db.alias!r} failed again after "
                        f"{budget.failures} reconnects; giving up.",
                        alias=db.alias,
                    ) from error


class ResilientCursorDebugWrapper(CursorDebugWrapper, ResilientCursorWrapper):
    """The DEBUG variant: logs queries like Django's, recovers like ours."""
