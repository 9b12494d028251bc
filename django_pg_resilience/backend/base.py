"""A PostgreSQL backend that rides through failovers.

``DATABASES[alias]["ENGINE"] = "django_pg_resilience.backend"``. It is Django's
postgresql backend (psycopg 3) with a few hooks overridden, the way PostGIS
extends it. The behaviour lives in :class:`ResilientDatabaseWrapperMixin`, so
it composes with other postgresql-based backends (see
``django_pg_resilience.backend.postgis``, or django-tenants'
``ORIGINAL_BACKEND``):

* :meth:`get_connection_params`: drops ``OPTIONS["resilience"]`` and adds safe
  libpq defaults the user did not set (``connect_timeout``, keepalives,
  ``tcp_user_timeout``, ``target_session_attrs=read-write`` for a multi-host
  HOST).
* Connecting: through the alias's circuit breaker (retry with backoff and full
  jitter), bounded by one budget per operation (:mod:`.operation`); a
  configuration error (bad password, unknown database) fails at once. Django's
  own ``get_new_connection`` runs unchanged: it connects through
  ``self.Database``, which here is psycopg with a breaker-paced ``connect``.
* :meth:`ensure_connection`: a connection found closed, or opened before an
  outage the breaker knows of, is replaced outside a transaction; inside one,
  :class:`~django_pg_resilience.errors.TransactionLostError`.
* Cursors: statements recover from a lost or demoted connection (see
  :mod:`.cursor`); a statement whose server went silent is abandoned (see
  :mod:`.connection` and :mod:`.liveness`).
* ``OPTIONS["pool"]``: Django's pool, where a busy pool is load and not an
  outage (see :mod:`.pool`).
* A full database (53300, PgBouncer's limits) is busy, not down (see
  :mod:`.busy`); connection attempts are bounded per process (see :mod:`.slots`).
* :meth:`close_if_unusable_or_obsolete`, which Django and Celery call from signal
  receivers outside any middleware, drops a dead connection but never opens one.
* Everything the process knows of the alias lives in its
  :class:`~django_pg_resilience.backend.alias.AliasState`; a backend composed
  with this one hooks in with :attr:`~ResilientDatabaseWrapperMixin.connection_hooks`.
"""

from __future__ import annotations

import contextlib
import select
import time
from functools import partial
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, OperationalError
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base as postgresql
from django.db.backends.postgresql.psycopg_any import is_psycopg3
from django.utils.asyncio import async_unsafe

from django_pg_resilience import conf, operation, signals, stats
from django_pg_resilience.backend import compat
from django_pg_resilience.backend.alias import AliasState, alias_state
from django_pg_resilience.backend.connection import ResilientConnection
from django_pg_resilience.backend.cursor import (
    ResilientCursorDebugWrapper,
    ResilientCursorWrapper,
)
from django_pg_resilience.backend.hooks import ConnectionHooks
from django_pg_resilience.backend.identity import read_identity
from django_pg_resilience.backend.liveness import ConnectionWatch
from django_pg_resilience.backend.tenants import DjangoTenantsHooks
from django_pg_resilience.backoff import RetryBudget, RetryPolicy
from django_pg_resilience.breaker import BreakerSettings
from django_pg_resilience.errors import (
    CommitUnknownError,
    DatabaseBusy,
    DatabaseUnavailable,
    ErrorKind,
    TransactionLostError,
    classify,
    failover_error,
    is_availability_error,
    is_failover,
)

__all__ = ["DatabaseWrapper", "ReadOnlySession", "ResilientDatabaseWrapperMixin"]


class _WouldReconnect(Exception):
    """Raised inside :meth:`ResilientDatabaseWrapperMixin.close_if_unusable_or_obsolete`
    instead of opening a connection: that code runs outside any middleware."""


class ReadOnlySession(psycopg.OperationalError):
    """The connection landed on a read-only server (a standby) while a primary is wanted."""

    sqlstate = "25006"


_CONFIGURATION_HINTS = (
    ("password", "check USER and PASSWORD"),
    ("pg_hba.conf", "check USER, HOST and the server's pg_hba.conf"),
    ('database "', "create the database or fix NAME"),
    ('role "', "create the role or fix USER"),
    ("invalid", "fix the connection options in OPTIONS"),
    ("certificate", "check sslrootcert (the CA that signed the server's certificate) and HOST"),
)

_LOST_IN_TRANSACTION = (
    "Cannot open a new connection in an atomic block. The connection to database {alias!r} "
    "was lost inside a transaction; nothing of the transaction was kept. Retry the whole "
    "unit of work (see django_pg_resilience.retry.atomic_with_retry)."
)


class _BreakerPacedDriver:
    """psycopg, as Django's wrapper sees it, but ``connect`` goes through the breaker.

    Django's ``get_new_connection`` connects with ``self.Database.connect``;
    standing in for the module there keeps Django's body (isolation level,
    pool checkout) instead of a copy of it.
    """

    def __init__(self, wrapper: ResilientDatabaseWrapperMixin) -> None:
        self._wrapper = wrapper

    def connect(self, **conn_params: Any) -> Any:
        return self._wrapper._connect_through_breaker(conn_params)

    def __getattr__(self, name: str) -> Any:
        return getattr(psycopg, name)


class _DriverDescriptor:
    """``wrapper.Database``: a driver stand-in made on each use; psycopg on the class.

    Made on use, not stored on the wrapper: a stored one would tie the wrapper
    into a reference cycle, and a closed wrapper must go without the garbage
    collector.
    """

    def __get__(self, wrapper: Any, owner: type | None = None) -> Any:
        return psycopg if wrapper is None else _BreakerPacedDriver(wrapper)


class ResilientDatabaseWrapperMixin:
    """The failover behaviour, for any subclass of Django's postgresql DatabaseWrapper.

    ``class DatabaseWrapper(ResilientDatabaseWrapperMixin, postgis.DatabaseWrapper)``
    """

    alias: str
    settings_dict: dict[str, Any]
    connection: Any
    in_atomic_block: bool
    closed_in_transaction: bool
    needs_rollback: bool
    errors_occurred: bool
    autocommit: bool

    #: What backends composed with this one (django-tenants, your own) do when the
    #: session is replaced: see :class:`~django_pg_resilience.backend.hooks.ConnectionHooks`.
    #: Extend it in a subclass: ``connection_hooks = (*Mixin.connection_hooks, MyHooks())``.
    connection_hooks: tuple[ConnectionHooks, ...] = (DjangoTenantsHooks(),)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ensuring_connection = False
        # Inside close_if_unusable_or_obsolete: drop, never connect.
        self._connecting_forbidden = False
        # The parameters of the pool this wrapper built (its configure callback's).
        self._pool_connect_params: dict[str, Any] = {}
        # Set when the connection was lost: the next connect reports a
        # reconnect and reads the server identity (failover detection).
        self._lost_at: float | None = None
        self._attempts = 0
        #: Why the current session holds state a fresh one would not (a SET,
        #: a temporary table...), or None. A read is not replayed elsewhere then.
        self.session_state: str | None = None

    #: psycopg, whose ``connect`` goes through the breaker (see _BreakerPacedDriver).
    Database: Any = _DriverDescriptor()

    # --- settings and state ------------------------------------------------

    @property
    def state(self) -> AliasState:
        """Everything this process knows of the alias (one object; see :mod:`.alias`)."""
        return alias_state(self.alias, self.settings_dict)

    @property
    def resilience(self) -> conf.BackendSettings:
        """This alias's backend settings (resolved once per process and setting change)."""
        return self.state.settings

    def retry_policy(self) -> RetryPolicy:
        """The retry policy of one operation on this alias."""
        return self.resilience.retry_policy

    def breaker_settings(self) -> BreakerSettings:
        """This alias's circuit-breaker settings."""
        return self.resilience.breaker_settings

    def get_connection_params(self) -> dict[str, Any]:
        # super() copies OPTIONS into the params, so ours are removed from the
        # copy: the shared settings dict is never mutated (threads race on it).
        params: dict[str, Any] = super().get_connection_params()  # type: ignore[misc]
        params.pop(conf.OPTIONS_KEY, None)
        settings = self.resilience
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
        with operation.recovery(self.retry_policy()) as budget:
            while True:
                try:
                    super().connect()  # type: ignore[misc]
                    return
                except Exception as exc:
                    if isinstance(exc, DatabaseUnavailable) or not is_failover(exc):
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
        self.session_state = None
        connection = super().get_new_connection(conn_params)  # type: ignore[misc]
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

    def _connect_through_breaker(self, conn_params: dict[str, Any]) -> Any:
        """Connect within the operation's budget: through the breaker when the database
        is down, behind the process's busy backoff when it is full. Never a 500: past the
        deadline, DatabaseUnavailable or DatabaseBusy."""
        self._attempts = 0
        state = self.state
        budget = operation.current() or self.retry_policy().start()
        state.use_probe(partial(_probe, conn_params, bool(self.resilience.read_write)))
        last_busy: BaseException | None = None
        while True:
            hold_back = state.busy.seconds_to_retry()
            if hold_back:
                if hold_back < budget.remaining:
                    time.sleep(hold_back)
                elif last_busy is not None:
                    raise self._busy_error(last_busy, budget) from last_busy
                # else: a caller whose whole deadline is shorter than the process's backoff
                # asks once rather than give up without asking.
            try:
                return state.breaker.call(
                    partial(self._connect_once, conn_params),
                    budget,
                    is_retryable=is_failover,
                    answered=_server_answered,
                )
            except Exception as exc:
                kind = classify(exc)
                if kind is ErrorKind.CONFIGURATION and isinstance(exc, psycopg.Error):
                    raise self._configuration_error(exc) from exc
                if kind is not ErrorKind.BUSY:
                    raise
                last_busy = exc
                state.busy.refused(
                    exc,
                    _where(conn_params),
                    self.resilience.busy_policy,
                    answered=not isinstance(exc, DatabaseBusy),
                )
                if isinstance(exc, DatabaseBusy) or budget.remaining <= 0:
                    raise self._busy_error(exc, budget) from exc

    def _busy_error(self, exc: BaseException | None, budget: RetryBudget) -> DatabaseBusy:
        if isinstance(exc, DatabaseBusy):
            return exc
        return DatabaseBusy(
            f"Database {self.alias!r} is busy (its connection slots are full); "
            f"gave up after {budget.elapsed:.2f} s.",
            alias=self.alias,
            retry_after=max(self.resilience.busy_backoff_cap, 1.0),
        )

    def _connect_once(self, conn_params: dict[str, Any], timeout: float) -> Any:
        """One connection attempt, in one of the process's attempt slots (errors propagate)."""
        state = self.state
        with state.connect_slots.attempt(timeout):
            stats.increment("connect_attempts", self.alias)
            self._attempts += 1
            connection = ResilientConnection.connect(**conn_params)
        try:
            self._check_new_connection(connection, conn_params)
        except BaseException:
            self._drop(connection)
            raise
        state.busy.connected()
        lost_at = self._lost_at
        if not state.identity.has_baseline() or (
            lost_at is not None and not state.identity.observed_since(lost_at)
        ):
            self._observe_identity(connection)
        return connection

    def _check_new_connection(self, connection: Any, conn_params: dict[str, Any]) -> None:
        """Refuse a standby where a primary is wanted; arm the silent-peer watch."""
        settings = self.resilience
        if settings.read_write and _is_read_only(connection):
            raise ReadOnlySession(
                f"Database {self.alias!r}: the server is read-only (a standby); "
                "a read-write primary is wanted."
            )
        if isinstance(connection, ResilientConnection):
            connection.io_timeout = settings.io_timeout or None
            connection.watch = self._watch(conn_params)

    def _watch(self, conn_params: dict[str, Any]) -> ConnectionWatch:
        settings = self.resilience
        state = self.state
        params = dict(conn_params)
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params["autocommit"] = True

        def connect(timeout: float) -> psycopg.Connection[Any]:
            # libpq's smallest connect_timeout is 2 s. The check's own queries are
            # bounded too: the server it asks about may go silent under it.
            seconds = max(int(min(settings.connect_timeout, timeout)), 2)
            check = ResilientConnection.connect(**{**params, "connect_timeout": seconds})
            check.io_timeout = float(seconds)
            return check

        return ConnectionWatch(
            monitor=state.liveness,
            opened_at=time.monotonic(),
            liveness_after=settings.liveness_after,
            liveness_interval=settings.liveness_interval,
            connect=connect,
            epoch=state.identity.epoch,
        )

    def _observe_identity(self, connection: Any) -> None:
        identity = self.state.identity
        if identity.observe(read_identity(connection)):
            self._discard_pooled_connections()
            if isinstance(connection, ResilientConnection) and connection.watch is not None:
                connection.watch.epoch = identity.epoch

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
        pool = compat.connection_pools(self).get(self.alias)
        if pool is None:
            return
        with contextlib.suppress(Exception):
            pool.drain()

    # --- losing a connection ----------------------------------------------

    def failover_kind(self, exc: BaseException) -> ErrorKind | None:
        """What ``exc`` means for this connection: a lost connection, a demoted node, or None.

        25006 (read-only transaction) means "this node was demoted" only when
        the session is on a read-only server; an application's own ``SET
        TRANSACTION READ ONLY`` raises it too, and is the caller's error.
        """
        kind = classify(exc)
        if kind is ErrorKind.CONNECTION:
            return kind
        if kind is ErrorKind.READ_ONLY:
            raw = self.connection
            if raw is None or raw.closed or _server_read_only(raw) is not False:
                return kind
        return None

    def connection_failed(self, *, read_only: bool = False) -> None:
        """Discard the current connection after a failover-class error.

        Outside a transaction the next use reconnects. Inside one the
        connection is marked unusable (Django's ``closed_in_transaction``), so
        the atomic block rolls back and nothing of it survives. ``read_only``
        (25006): the node was demoted, so every pooled connection goes too.
        """
        if self._lost_at is None:
            # Before the connection goes: whoever sees it gone may rely on this
            # instant (the identity read that ends the outage is compared with it).
            self._lost_at = time.monotonic()
        raw = self.connection
        if raw is not None:
            self._drop(raw)
        if self.in_atomic_block:
            self.closed_in_transaction = True
            self.needs_rollback = True
        else:
            self.connection = None
        self.errors_occurred = True
        self.session_state = None
        for hooks in self.connection_hooks:
            hooks.session_lost(self)
        if read_only:
            self._discard_pooled_connections()

    def ensure_connection(self) -> None:
        # Not @async_unsafe itself: Django's, called below when a connection is
        # opened, checks; so do cursor() and the other entry points.
        if self._ensuring_connection:
            # Called back through a patched BaseDatabaseWrapper.ensure_connection
            # (Django's test utilities patch it so): Django's own body, no recursion.
            self._open_connection()
            return
        if self.connection is not None:
            self._drop_unusable_connection()
            if self.connection is not None:
                return  # what Django's ensure_connection does for an open connection
        if self.in_atomic_block and self.closed_in_transaction:
            raise self.transaction_lost()
        if self._connecting_forbidden:
            raise _WouldReconnect
        self._ensuring_connection = True
        try:
            # Django's, through any patch of it (SimpleTestCase's guard against
            # database access from threads relies on one).
            super().ensure_connection()  # type: ignore[misc]
        finally:
            self._ensuring_connection = False

    def _drop_unusable_connection(self) -> None:
        """Drop a connection found closed, or opened before an outage the breaker knows of."""
        connection = self.connection
        if (
            connection is not None
            and not self.closed_in_transaction
            and (_found_broken(connection) or self._predates_outage(connection))
        ):
            in_transaction = self.in_atomic_block
            self.connection_failed()
            if in_transaction:
                raise self.transaction_lost()

    def _open_connection(self) -> None:
        """Django's ``ensure_connection`` body."""
        if self.connection is None:
            if self.in_atomic_block and self.closed_in_transaction:
                raise self.transaction_lost()
            with self.wrap_database_errors:  # type: ignore[attr-defined]
                self.connect()

    def close_if_unusable_or_obsolete(self) -> None:
        # Django runs this in its request_started / request_finished receivers
        # (close_old_connections) and Celery in its task signals: before or after
        # every middleware, where an error of ours would be a 500. So it drops a
        # connection found dead (or older than an outage) and never opens one:
        # reconnecting waits for the first real query, inside the middleware.
        connection = self.connection
        if connection is None:
            return
        if not self.in_atomic_block and (
            _found_broken(connection) or self._predates_outage(connection)
        ):
            self.connection_failed()
            return
        self._connecting_forbidden = True
        try:
            super().close_if_unusable_or_obsolete()  # type: ignore[misc]
        except _WouldReconnect:
            pass  # dropped on the way (an outage began meanwhile): the next query reconnects
        except DatabaseError as exc:
            if not is_availability_error(exc):
                raise
            self.connection_failed()
        finally:
            self._connecting_forbidden = False

    def own_session_setup(self) -> bool:
        """True while a composed backend applies its own per-connection state (see hooks)."""
        return any(hooks.applying_session_setup(self) for hooks in self.connection_hooks)

    def _predates_outage(self, connection: Any) -> bool:
        """The breaker knows of an outage that began after this connection was opened."""
        outage_since = self.state.breaker.outage_since
        if outage_since is None:
            return False
        watch = getattr(connection, "watch", None)
        return watch is not None and outage_since >= watch.opened_at

    def transaction_lost(self) -> TransactionLostError:
        """The error for a connection lost inside an atomic block (counted)."""
        return failover_error(
            self.alias, _LOST_IN_TRANSACTION.format(alias=self.alias), TransactionLostError
        )

    def _commit(self) -> None:
        try:
            return super()._commit()  # type: ignore[misc]
        except DatabaseError as exc:
            kind = self.failover_kind(exc)
            if kind is None:
                raise
            self.connection_failed(read_only=kind is ErrorKind.READ_ONLY)
            # Atomic.__exit__ drops a connection closed in its transaction
            # instead of reconnecting to restore autocommit.
            self.closed_in_transaction = True
            raise failover_error(
                self.alias,
                f"The connection to database {self.alias!r} was lost during COMMIT; "
                "the transaction may or may not have been committed.",
                CommitUnknownError,
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
        state = self.state
        self._check_new_connection(connection, self._pool_connect_params)
        compat.configure_connection(self, connection)
        if state.identity.observe(read_identity(connection)):
            state.pool_drain_pending = True
        if connection.watch is not None:
            connection.watch.epoch = state.identity.epoch

    def _found_broken_in_pool(self, connection: Any) -> bool:
        state = self.state
        if state.pool_drain_pending:
            state.pool_drain_pending = False
            self._discard_pooled_connections()
        return _found_broken(connection) or self._predates_outage(connection)

    def _probe_directly(self, timeout: float) -> None:
        params = self.get_connection_params()
        self._connect_once(params, timeout).close()

    def _replace_pool(self, old: Any) -> Any:
        from django_pg_resilience.backend.pool import replace_pool

        return replace_pool(compat.connection_pools(self), old, lambda: self.pool)

    if hasattr(postgresql.DatabaseWrapper, "pool"):

        @property
        def pool(self) -> Any:
            """Django's pool (its own code, with our pool and connection classes)."""
            pool_options = self.settings_dict["OPTIONS"].get("pool")
            if self.alias == NO_DB_ALIAS or not pool_options:
                return None
            pools = compat.connection_pools(self)
            if self.alias not in pools:
                if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                    raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
                from django_pg_resilience.backend.pool import ResilientConnectionPool

                options = {} if pool_options is True else dict(pool_options)
                options.setdefault("connection_class", ResilientConnection)
                # Django 6.1 lets OPTIONS["pool"] name its own check; so do we.
                enable_checks = self.settings_dict["CONN_HEALTH_CHECKS"]
                options.setdefault(
                    "check", ResilientConnectionPool.check_connection if enable_checks else None
                )
                connect_kwargs = self.get_connection_params()
                connect_kwargs["autocommit"] = True
                self._pool_connect_params = connect_kwargs
                self.state.use_probe(
                    partial(_probe, connect_kwargs, bool(self.resilience.read_write))
                )
                pool = ResilientConnectionPool(
                    kwargs=connect_kwargs,
                    open=False,
                    configure=self._configure_pooled_connection,
                    alias=self.alias,
                    policy=self.retry_policy(),
                    probe=self._probe_directly,
                    replace=self._replace_pool,
                    found_broken=self._found_broken_in_pool,
                    **options,
                )
                pools.setdefault(self.alias, pool)
            return pools[self.alias]


class DatabaseWrapper(ResilientDatabaseWrapperMixin, postgresql.DatabaseWrapper):
    """Django's postgresql DatabaseWrapper that reconnects, retries where safe and fails fast."""


def _is_read_only(connection: Any) -> bool:
    """From the startup parameters: no round trip (PostgreSQL 14+ reports them)."""
    status = connection.info.parameter_status
    return "on" in (status("in_hot_standby"), status("default_transaction_read_only"))


def _server_read_only(connection: Any) -> bool | None:
    """Whether the session's server is read-only (None: the server does not say)."""
    status = connection.info.parameter_status
    hot_standby = status("in_hot_standby")
    if hot_standby is None:
        return None  # before PostgreSQL 14: assume the worst, a demotion
    return "on" in (hot_standby, status("default_transaction_read_only"))


def _probe(conn_params: dict[str, Any], read_write: bool, timeout: float) -> None:
    """The open circuit's background probe: connect, check, close (see :mod:`.prober`).

    A function of the parameters alone: the prober outlives any one wrapper, and must
    not keep one alive.
    """
    seconds = max(int(min(float(conn_params.get("connect_timeout") or 2), timeout)), 2)
    connection = ResilientConnection.connect(**{**conn_params, "connect_timeout": seconds})
    try:
        if read_write and _is_read_only(connection):
            raise ReadOnlySession("the server is read-only (a standby)")
    finally:
        connection.close()


def _server_answered(exc: BaseException) -> bool:
    """The server (or PgBouncer) answered the attempt, if only to refuse it: it is reachable."""
    return isinstance(exc, psycopg.Error) and classify(exc) in (
        ErrorKind.BUSY,
        ErrorKind.CONFIGURATION,
    )


def _where(conn_params: dict[str, Any]) -> str:
    """``host:port`` of the connection parameters, for log lines (never the password)."""
    return f"{conn_params.get('host') or 'localhost'}:{conn_params.get('port') or 5432}"


def _found_broken(connection: Any) -> bool:
    """True when an idle connection turned out closed (EOF or RST arrived).

    A server that died (or a proxy that dropped us) while the connection sat
    idle is only noticed by psycopg when a statement is sent, and then the
    statement's fate is unknown. One non-blocking poll before use (well under
    a microsecond) finds it first, so the statement goes to a new connection.
    """
    if connection.closed:
        return True
    found = getattr(connection, "found_closed", None)
    if found is not None:
        return bool(found())
    try:
        poller = select.poll()
        poller.register(connection.pgconn.socket, select.POLLIN)
        readable = bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return False
    if readable:
        # Let libpq read what arrived; on EOF it marks the connection bad (closed).
        with contextlib.suppress(psycopg.Error):
            connection.pgconn.consume_input()
    return bool(connection.closed)
