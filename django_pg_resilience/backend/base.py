"""A PostgreSQL backend that rides through failovers.

``DATABASES[alias]["ENGINE"] = "django_pg_resilience.backend"``. It is Django's
postgresql backend (psycopg 3) with a few hooks overridden, the way PostGIS
extends it:

* :meth:`DatabaseWrapper.get_connection_params`: drops ``OPTIONS["resilience"]``
  and adds safe libpq defaults the user did not set (``connect_timeout``,
  keepalives, ``tcp_user_timeout``, ``target_session_attrs=read-write`` for a
  multi-host HOST).
* :meth:`DatabaseWrapper.get_new_connection`: connects through the alias's
  circuit breaker (retry with backoff and full jitter, bounded by ``deadline``);
  a configuration error (bad password, unknown database) fails at once.
* :meth:`DatabaseWrapper.ensure_connection`: a connection found closed is
  replaced outside a transaction; inside one, :class:`FailoverError`.
* :meth:`DatabaseWrapper.make_cursor`: statements recover from a lost or
  demoted connection (see :mod:`.cursor`).
"""

from __future__ import annotations

import contextlib
import select
import time
from functools import partial
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, OperationalError, ProgrammingError
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base as postgresql
from django.db.backends.postgresql.psycopg_any import IsolationLevel, is_psycopg3
from django.utils.asyncio import async_unsafe

from django_pg_resilience import conf, signals, stats
from django_pg_resilience.backend import identity
from django_pg_resilience.backend.connection import ResilientConnection
from django_pg_resilience.backend.cursor import (
    ResilientCursorDebugWrapper,
    ResilientCursorWrapper,
)
from django_pg_resilience.backoff import RetryPolicy
from django_pg_resilience.breaker import BreakerSettings, breaker_for
from django_pg_resilience.errors import (
    DatabaseUnavailable,
    ErrorKind,
    FailoverError,
    classify,
    sqlstate_of,
)

__all__ = ["DatabaseWrapper", "ReadOnlySession"]

#: Aliases whose pool must be drained at the next checkout (a failover was
#: detected on a connection the pool opened).
_pools_to_drain: dict[str, bool] = {}


class ReadOnlySession(psycopg.OperationalError):
    """The connection landed on a read-only server (a standby) while a primary is wanted."""

    sqlstate = "25006"


_CONFIGURATION_HINTS = (
    ("password", "check USER and PASSWORD"),
    ("pg_hba.conf", "check USER, HOST and the server's pg_hba.conf"),
    ('database "', "create the database or fix NAME"),
    ('role "', "create the role or fix USER"),
    ("invalid", "fix the connection options in OPTIONS"),
)


def _is_retryable_connect_error(exc: BaseException) -> bool:
    return classify(exc) in (ErrorKind.CONNECTION, ErrorKind.READ_ONLY)


class DatabaseWrapper(postgresql.DatabaseWrapper):
    """Django's postgresql DatabaseWrapper that reconnects, retries where safe and fails fast."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resilience: conf.BackendSettings | None = None
        # Set when the connection was lost: the next connect reports a
        # reconnect and reads the server identity (failover detection).
        self._lost_at: float | None = None
        self._attempts = 0

    # --- settings --------------------------------------------------------

    @property
    def resilience(self) -> conf.BackendSettings:
        """This alias's backend settings (re-read at every connect)."""
        if self._resilience is None:
            self._resilience = conf.backend_settings(self.alias, self.settings_dict)
        return self._resilience

    def retry_policy(self) -> RetryPolicy:
        """The retry policy of one operation on this alias."""
        settings = self.resilience
        return RetryPolicy(
            deadline=settings.deadline,
            max_attempts=settings.max_attempts,
            base=settings.backoff_base,
            cap=settings.backoff_cap,
            jitter=settings.jitter,
        )

    def get_connection_params(self) -> dict[str, Any]:
        # super() copies OPTIONS into the params, so ours are removed from the
        # copy: the shared settings dict is never mutated (threads race on it).
        params = super().get_connection_params()
        params.pop(conf.OPTIONS_KEY, None)
        self._resilience = conf.backend_settings(self.alias, self.settings_dict)
        settings = self._resilience
        params.setdefault("connect_timeout", settings.connect_timeout)
        params.setdefault("keepalives", 1)
        params.setdefault("keepalives_idle", settings.keepalives_idle)
        params.setdefault("keepalives_interval", settings.keepalives_interval)
        params.setdefault("keepalives_count", settings.keepalives_count)
        params.setdefault("tcp_user_timeout", int(settings.tcp_user_timeout * 1000))
        if settings.read_write and "," in str(params.get("host") or ""):
            params.setdefault("target_session_attrs", "read-write")
        return params

    # --- connecting ------------------------------------------------------

    @async_unsafe
    def connect(self) -> None:
        # A connection can die between being opened and being set up (autocommit,
        # time zone, role): that is one more failed attempt, not the caller's error.
        budget = self.retry_policy().start()
        while True:
            try:
                super().connect()
                return
            except Exception as exc:
                if isinstance(exc, DatabaseUnavailable) or not _is_retryable_connect_error(exc):
                    raise
                delay = None if self.connection is None else budget.next_delay()
                if delay is None:
                    raise
                self.connection_failed()
                # The breaker saw a successful connect, so it would not pace this.
                time.sleep(delay)

    @async_unsafe
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if not is_psycopg3:
            raise ImproperlyConfigured("django_pg_resilience.backend requires psycopg 3.")
        settings = self.resilience
        breaker_settings = BreakerSettings(
            open_interval=settings.breaker_open_interval,
            max_interval=settings.breaker_max_interval,
            threshold=settings.breaker_threshold,
        )
        self._attempts = 0
        try:
            connection = breaker_for(self.alias).call(
                partial(self._connect_once, conn_params),
                self.retry_policy(),
                is_retryable=_is_retryable_connect_error,
                settings=breaker_settings,
            )
        except psycopg.Error as exc:
            if classify(exc) is ErrorKind.CONFIGURATION:
                raise self._configuration_error(exc) from exc
            raise
        if self._lost_at is not None:
            stats.increment("reconnects", self.alias)
            signals.reconnected.send(
                sender=type(self),
                alias=self.alias,
                attempts=self._attempts,
                elapsed=time.monotonic() - self._lost_at,
            )
            self._lost_at = None
        return connection

    def _connect_once(self, conn_params: dict[str, Any], timeout: float) -> Any:
        """One connection attempt (psycopg errors propagate to the breaker)."""
        stats.increment("connect_attempts", self.alias)
        self._attempts += 1
        settings = self.resilience
        options = self.settings_dict["OPTIONS"]
        isolation_level = options.get("isolation_level")
        if isolation_level is None:
            self.isolation_level = IsolationLevel.READ_COMMITTED
        else:
            try:
                self.isolation_level = IsolationLevel(isolation_level)
            except ValueError:
                raise ImproperlyConfigured(
                    f"Invalid transaction isolation level {isolation_level} "
                    f"specified. Use one of the psycopg.IsolationLevel values."
                ) from None
        pool = getattr(self, "pool", None)  # Django < 5.1 has no pool
        if pool is not None:
            pool.open()
            if _pools_to_drain.pop(self.alias, False):
                self._discard_pooled_connections()
            connection = pool.getconn(timeout=max(timeout, 0.05))
        else:
            connection = ResilientConnection.connect(**conn_params)
        try:
            if isinstance(connection, ResilientConnection):
                connection.io_timeout = settings.io_timeout or None
            if settings.read_write and _is_read_only(connection):
                raise ReadOnlySession(
                    f"Database {self.alias!r}: the server is read-only (a standby); "
                    "a read-write primary is wanted."
                )
            lost_at = self._lost_at
            check_identity = not identity.has_baseline(self.alias) or (
                lost_at is not None and not identity.observed_since(self.alias, lost_at)
            )
            if check_identity and identity.observe(self.alias, identity.read_identity(connection)):
                self._discard_pooled_connections()
        except BaseException:
            self._drop(connection)
            raise
        if isolation_level is not None:
            connection.isolation_level = self.isolation_level
        return connection

    def _configuration_error(self, exc: psycopg.Error) -> OperationalError:
        """The driver's words (no password in them), plus what to fix."""
        text = str(exc).strip()
        hint = next(
            (fix for words, fix in _CONFIGURATION_HINTS if words in text.lower()),
            "check the connection settings",
        )
        return OperationalError(
            f"Cannot connect to database {self.alias!r}: {text} "
            f"(not retried: {hint} in DATABASES[{self.alias!r}])."
        )

    def _drop(self, connection: Any) -> None:
        with contextlib.suppress(Exception):
            connection.close()
        pool = getattr(connection, "_pool", None)
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.putconn(connection)

    def _discard_pooled_connections(self) -> None:
        """The server changed: idle pooled connections point at the old one."""
        pools = getattr(self, "_connection_pools", {})
        pool = pools.get(self.alias)
        if pool is None:
            return
        drain = getattr(pool, "drain", None)
        with contextlib.suppress(Exception):
            drain() if drain is not None else pool.check()

    # --- losing a connection ----------------------------------------------

    def connection_failed(self, *, read_only: bool = False) -> None:
        """Discard the current connection after a failover-class error.

        Outside a transaction the next use reconnects. Inside one the
        connection is marked unusable (Django's ``closed_in_transaction``), so
        the atomic block rolls back and nothing of it survives. ``read_only``
        (25006): the node was demoted, so every pooled connection goes too.
        """
        raw = self.connection
        if raw is not None:
            self._drop(raw)
        if self.in_atomic_block:
            self.closed_in_transaction = True
            self.needs_rollback = True
        else:
            self.connection = None
        self.errors_occurred = True
        if self._lost_at is None:
            self._lost_at = time.monotonic()
        if read_only:
            self._discard_pooled_connections()

    @async_unsafe
    def ensure_connection(self) -> None:
        connection = self.connection
        if connection is not None:
            if not connection.closed and _has_input(connection):
                _consume_input(connection)
            if connection.closed and not self.closed_in_transaction:
                in_transaction = self.in_atomic_block
                self.connection_failed()
                if in_transaction:
                    raise self._failover_in_transaction()
        elif self.in_atomic_block and self.closed_in_transaction:
            raise self._failover_in_transaction()
        try:
            super().ensure_connection()
        except ProgrammingError as exc:
            if self.in_atomic_block and self.closed_in_transaction:
                raise self._failover_in_transaction() from exc
            raise

    def _failover_in_transaction(self) -> FailoverError:
        stats.increment("failover_errors", self.alias)
        return FailoverError(
            f"The connection to database {self.alias!r} was lost inside a transaction; "
            "nothing of the transaction was kept. Retry the whole unit of work.",
            alias=self.alias,
        )

    def _commit(self) -> None:
        try:
            return super()._commit()  # type: ignore[misc]
        except DatabaseError as exc:
            if classify(exc) not in (ErrorKind.CONNECTION, ErrorKind.READ_ONLY):
                raise
            self.connection_failed(read_only=sqlstate_of(exc) == "25006")
            # Atomic.__exit__ drops a connection closed in its transaction
            # instead of reconnecting to restore autocommit.
            self.closed_in_transaction = True
            stats.increment("failover_errors", self.alias)
            raise FailoverError(
                f"The connection to database {self.alias!r} was lost during COMMIT; "
                "the transaction may or may not have been committed.",
                alias=self.alias,
            ) from exc

    # --- cursors ---------------------------------------------------------

    def make_cursor(self, cursor: Any) -> ResilientCursorWrapper:
        return ResilientCursorWrapper(cursor, self)

    def make_debug_cursor(self, cursor: Any) -> ResilientCursorDebugWrapper:
        return ResilientCursorDebugWrapper(cursor, self)

    # --- pool (Django >= 5.1) ----------------------------------------------

    def _configure_pooled_connection(self, connection: Any) -> None:
        """Run by the pool for each connection it opens (not on checkout).

        The pool replaces broken connections by itself, so the wrapper never sees
        a loss: the server identity is read here instead, once per new pooled
        connection. The pool is drained by the next checkout, outside the
        pool's worker thread.
        """
        self._configure_connection(connection)  # type: ignore[attr-defined]
        if identity.observe(self.alias, identity.read_identity(connection)):
            _pools_to_drain[self.alias] = True

    if hasattr(postgresql.DatabaseWrapper, "pool"):

        @property
        def pool(self) -> Any:
            """Django's pool, opening our connection class, with checks on checkout by default."""
            pool_options = self.settings_dict["OPTIONS"].get("pool")
            if self.alias == NO_DB_ALIAS or not pool_options:
                return None
            pools = self._connection_pools  # type: ignore[attr-defined]
            if self.alias not in pools:
                if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                    raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
                try:
                    from psycopg_pool import ConnectionPool
                except ImportError as err:
                    raise ImproperlyConfigured(
                        "Error loading psycopg_pool module.\nDid you install psycopg[pool]?"
                    ) from err
                options = {} if pool_options is True else dict(pool_options)
                options.setdefault("connection_class", ResilientConnection)
                check_on_checkout = (
                    self.settings_dict["CONN_HEALTH_CHECKS"] or self.resilience.pool_check
                )
                options.setdefault(
                    "check", ConnectionPool.check_connection if check_on_checkout else None
                )
                connect_kwargs = self.get_connection_params()
                connect_kwargs["autocommit"] = True
                pool = ConnectionPool(
                    kwargs=connect_kwargs,
                    open=False,
                    configure=self._configure_pooled_connection,
                    **options,
                )
                pools.setdefault(self.alias, pool)
            return pools[self.alias]


def _is_read_only(connection: Any) -> bool:
    """From the startup parameters: no round trip (PostgreSQL 14+ reports them)."""
    status = connection.info.parameter_status
    return "on" in (status("in_hot_standby"), status("default_transaction_read_only"))


def _has_input(connection: Any) -> bool:
    """True when an idle connection has something to read: usually EOF or RST.

    A server that died (or a proxy that dropped us) while the connection sat
    idle is only noticed by psycopg when a statement is sent, and then the
    statement's fate is unknown. One non-blocking poll before use (about a
    microsecond) finds it first, so the statement goes to a new connection.
    """
    try:
        fd = connection.pgconn.socket
        if fd < 1024:  # select() cannot watch higher descriptors (FD_SETSIZE)
            return bool(select.select((fd,), (), (), 0)[0])
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return False


def _consume_input(connection: Any) -> None:
    """Let libpq read what arrived; on EOF it marks the connection bad (closed)."""
    with contextlib.suppress(psycopg.Error):
        connection.pgconn.consume_input()
