"""Cursor wrappers that recover a statement from a lost connection when it is safe.

Rules:

* Outside a transaction (autocommit), after a reconnect, a statement is re-run
  only when that is safe: it is a read (see :mod:`.statements`), or the failure
  proves it never ran (the connection was found closed before sending, or the
  server refused it with 25006 because it is a standby now).
* A read is not re-run on a fresh session when the lost session held state the
  read may depend on (a ``SET``, ``search_path``, a temporary table, a prepared
  statement, ``LISTEN``, a session advisory lock): the new session would not
  have it, so :class:`FailoverError` instead.
* A write whose fate is unknown is never replayed: :class:`FailoverError`.
* Inside a transaction nothing is replayed: the connection is marked unusable
  and :class:`TransactionLostError` is raised.
* Replays back off between reconnects (the alias's policy, full jitter) and
  spend the operation's one budget (:mod:`.operation`).

Django's ``wrap_database_errors`` still translates every driver error; this
wrapper only looks at what comes out of it.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from django.db import DatabaseError

from django_pg_resilience import conf, operation, stats
from django_pg_resilience.backend import compat
from django_pg_resilience.backend.compat import CursorDebugWrapper, CursorWrapper
from django_pg_resilience.backend.statements import is_read_statement, session_state_change
from django_pg_resilience.backoff import RetryPolicy
from django_pg_resilience.errors import (
    ErrorKind,
    TransactionLostError,
    failover_error,
)

__all__ = ["ResilientCursorDebugWrapper", "ResilientCursorWrapper"]


class _Wrapper(Protocol):
    """What the cursor needs of its DatabaseWrapper (the mixin in :mod:`.base`)."""

    alias: str
    in_atomic_block: bool
    autocommit: bool
    session_state: str | None

    @property
    def resilience(self) -> conf.BackendSettings: ...

    def retry_policy(self) -> RetryPolicy: ...

    def failover_kind(self, exc: BaseException) -> ErrorKind | None: ...

    def connection_failed(self, *, read_only: bool = False) -> None: ...

    def transaction_lost(self) -> TransactionLostError: ...

    def own_session_setup(self) -> bool: ...


# psycopg raises this before sending anything when the connection is already closed.
_NOT_SENT_MESSAGE = "the connection is closed"


def _never_ran(exc: BaseException, kind: ErrorKind) -> bool:
    if kind is ErrorKind.READ_ONLY:
        return True  # refused by a read-only server: nothing was applied
    cause = exc.__cause__ or exc
    return str(cause).startswith(_NOT_SENT_MESSAGE)


class ResilientCursorWrapper(CursorWrapper):
    """Django's CursorWrapper, plus recovery from a lost or demoted connection."""

    db: _Wrapper

    def _execute(self, sql: Any, params: Any, *ignored_wrapper_args: Any) -> Any:
        try:
            result = super()._execute(sql, params, *ignored_wrapper_args)  # type: ignore[misc]
        except DatabaseError as exc:
            kind = self.db.failover_kind(exc)
            if kind is None:
                raise
            return self._recover(exc, kind, sql, params, many=False)
        self._note_session_state(sql)
        return result

    def _executemany(self, sql: Any, param_list: Any, *ignored_wrapper_args: Any) -> Any:
        try:
            result = super()._executemany(sql, param_list, *ignored_wrapper_args)  # type: ignore[misc]
        except DatabaseError as exc:
            kind = self.db.failover_kind(exc)
            if kind is None:
                raise
            return self._recover(exc, kind, sql, param_list, many=True)
        self._note_session_state(sql)
        return result

    def _note_session_state(self, sql: Any) -> None:
        db = self.db
        if isinstance(sql, str) and db.session_state is None:
            change = session_state_change(sql)
            # A composed backend's own setup (django-tenants' search_path) comes
            # back with the replay's cursor: not state only this session has.
            if change is not None and not db.own_session_setup():
                db.session_state = change

    def _recover(self, exc: Exception, kind: ErrorKind, sql: Any, params: Any, many: bool) -> Any:
        db = self.db
        alias = db.alias
        in_transaction = db.in_atomic_block or not db.autocommit
        session_state = db.session_state
        db.connection_failed(read_only=kind is ErrorKind.READ_ONLY)
        if in_transaction:
            raise db.transaction_lost() from exc
        if session_state is not None:
            raise failover_error(
                alias,
                f"The connection to database {alias!r} was lost, and its session had state "
                f"({session_state}) a new session would not have; the statement was not "
                "re-run.",
            ) from exc
        settings = db.resilience
        safe = _never_ran(exc, kind) or (
            not many and settings.retry_reads and isinstance(sql, str) and is_read_statement(sql)
        )
        if not safe or getattr(self.cursor, "name", None):
            raise failover_error(
                alias,
                f"The connection to database {alias!r} was lost while a write was in "
                "flight; it may or may not have been applied, so it was not re-run.",
            ) from exc
        suspected_at = getattr(exc.__cause__, "suspected_at", None)
        with operation.recovery(db.retry_policy(), started=suspected_at) as budget:
            return self._replay(budget, sql, params, many)

    def _replay(self, budget: Any, sql: Any, params: Any, many: bool) -> Any:
        db = self.db
        while True:
            stats.increment("retries", db.alias)
            # Connecting goes through the breaker: it waits for the outage within
            # the operation's budget or raises DatabaseUnavailable.
            # The whole _cursor() path, so a backend mixed with ours re-applies
            # what it sets on each new connection (django-tenants' search_path).
            self.cursor = compat.open_cursor(db).cursor
            try:
                if many:
                    return super()._executemany(sql, params)  # type: ignore[misc]
                return super()._execute(sql, params)  # type: ignore[misc]
            except DatabaseError as exc:
                kind = db.failover_kind(exc)
                if kind is None:
                    raise
                db.connection_failed(read_only=kind is ErrorKind.READ_ONLY)
                delay = budget.next_delay()
                if delay is None:
                    raise failover_error(
                        db.alias,
                        f"A read on database {db.alias!r} failed again after "
                        f"{budget.failures} reconnects; giving up.",
                    ) from exc
                time.sleep(delay)


class ResilientCursorDebugWrapper(CursorDebugWrapper, ResilientCursorWrapper):
    """The DEBUG variant: logs queries like Django's, recovers like ours."""
