"""The package's exceptions, and the one place that decides what an error means.

Every other module (the backend, the retry helper, the middleware, the webhook
views) asks :func:`classify` rather than looking at SQLSTATEs itself, so the
rules in ``REFERENCE.md`` live here once.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import TypeVar

from django.db import OperationalError, ProgrammingError

from django_pg_resilience.server_messages import PGBOUNCER_BUSY_PHRASES, SERVER_BUSY_PHRASES

__all__ = [
    "CommitUnknownError",
    "DatabaseBusy",
    "DatabaseUnavailable",
    "ErrorKind",
    "FailoverError",
    "NestedRetryError",
    "TransactionLostError",
    "causes",
    "classify",
    "failover_error",
    "is_availability_error",
    "is_busy",
    "is_failover",
    "sqlstate_of",
]


class FailoverError(OperationalError):
    """The connection was lost or demoted while work was in flight.

    Raised inside an atomic block (nothing of the transaction survives) and for
    a write outside one whose fate is unknown (it may or may not have been
    applied, so it is never replayed blindly). The caller may retry the whole
    unit of work, for example with :func:`django_pg_resilience.retry.atomic_with_retry`.
    """

    def __init__(self, message: str, *, alias: str = "default") -> None:
        super().__init__(message)
        self.alias = alias


class TransactionLostError(FailoverError, ProgrammingError):
    """The connection was lost inside an atomic block; nothing of the transaction was kept.

    Also a :class:`django.db.ProgrammingError`, because that is what Django
    documents (and its own tests expect) when an atomic block finds its
    connection gone: "Cannot open a new connection in an atomic block."
    Code written for stock Django keeps catching it; ours sees a failover.
    """


class CommitUnknownError(FailoverError):
    """The connection was lost during COMMIT: the transaction may or may not have committed.

    No client can tell which. :func:`~django_pg_resilience.retry.atomic_with_retry`
    re-runs the unit after this error only when the unit says it is idempotent
    (``idempotent=True``): otherwise a committed first run would be doubled.
    """


_Failover = TypeVar("_Failover", bound=FailoverError)


def failover_error(alias: str, message: str, cls: type[_Failover] = FailoverError) -> _Failover:  # type: ignore[assignment]
    """Build the :class:`FailoverError` (or subclass) a caller gets, and count it."""
    from django_pg_resilience import stats

    stats.increment("failover_errors", alias)
    return cls(message, alias=alias)


class DatabaseUnavailable(OperationalError):
    """The database has been unreachable for longer than the caller's deadline.

    ``retry_after`` is the number of seconds until the circuit breaker's next
    probe: a good ``Retry-After`` value.
    """

    def __init__(self, message: str, *, alias: str = "default", retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.alias = alias
        self.retry_after = retry_after


class DatabaseBusy(OperationalError):
    """The database (or the pooler in front of it) was full for longer than the caller's deadline.

    Load, not an outage: the server answered "too many clients" (53300), PgBouncer
    refused or queued the client past its limits, or the connection pool had no
    connection free. It never opens the circuit breaker. ``retry_after`` is a short
    delay (seconds) for ``Retry-After``: a full database frees slots within moments.
    """

    def __init__(self, message: str, *, alias: str = "default", retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.alias = alias
        self.retry_after = retry_after


class NestedRetryError(RuntimeError):
    """``atomic_with_retry`` was called inside an outer atomic block.

    A nested unit cannot be retried on its own: the outer transaction is gone
    once the connection is, so the retry belongs around the outermost block.
    """


class ErrorKind(enum.Enum):
    """What an error means for the caller."""

    #: The node is gone, unreachable, restarting or shutting down: reconnect.
    CONNECTION = "connection"
    #: We are talking to a standby (a demoted old primary): drop and reconnect.
    READ_ONLY = "read_only"
    #: 40001 / 40P01: the transaction may be re-run as a whole.
    TRANSACTION_CONFLICT = "transaction_conflict"
    #: The database or its pooler is full (53300, PgBouncer's limits, a pool with no
    #: connection free in time, or too many waiting): load, not an outage.
    BUSY = "busy"
    #: Bad password, unknown database, bad options: retrying cannot help.
    CONFIGURATION = "configuration"
    #: Anything else (a constraint, a bug in SQL): not ours to handle.
    OTHER = "other"


_CONNECTION_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
_BUSY_SQLSTATE = "53300"
_CONFIGURATION_SQLSTATES = frozenset({"28P01", "28000", "3D000", "42704"})
_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})

# Connection-time failures carry no SQLSTATE (the server never answered), so
# the message is all there is. These are libpq's own words.
_CONFIGURATION_MESSAGES = (
    "password authentication failed",
    "no password supplied",
    "does not exist",  # database "x" does not exist / role "x" does not exist
    "invalid connection option",
    "invalid sslmode value",
    "invalid target_session_attrs value",
    "invalid integer value",
    'missing "=" after',
    "pg_hba.conf rejects connection",
    # TLS: a certificate the client cannot trust never becomes trustworthy by retrying.
    "certificate verify failed",
    "root certificate file",
    "does not match host name",
)


_BUSY_PHRASES = (*SERVER_BUSY_PHRASES, *PGBOUNCER_BUSY_PHRASES)

#: How far :func:`causes` follows ``__cause__`` / ``__context__``: Django wraps a
#: driver error once or twice; a longer chain is a loop or not about the database.
CAUSE_DEPTH = 5


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then the errors it wraps (``__cause__``, else ``__context__``), nearest first."""
    seen = 0
    while exc is not None and seen < CAUSE_DEPTH:
        yield exc
        exc = exc.__cause__ or exc.__context__
        seen += 1


def sqlstate_of(exc: BaseException | None) -> str | None:
    """Return the SQLSTATE of ``exc`` or of the driver error it wraps, if any."""
    for error in causes(exc):
        state = getattr(error, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
    return None


def _driver_error(exc: BaseException) -> BaseException:
    """Django wraps psycopg errors (``raise dj_exc from exc``): look underneath."""
    import psycopg

    cause = exc.__cause__
    # isinstance, not the module name: the backend's own psycopg.OperationalError
    # subclasses (IoTimeout, ReadOnlySession) are driver errors too.
    if cause is not None and (
        isinstance(cause, psycopg.Error)
        or type(cause).__module__.startswith(("psycopg", "psycopg_pool"))
    ):
        return cause
    return exc


def classify(exc: BaseException) -> ErrorKind:
    """Say what ``exc`` means: see :class:`ErrorKind`."""
    if isinstance(exc, FailoverError | DatabaseUnavailable):
        return ErrorKind.CONNECTION
    if _is_busy(exc):
        return ErrorKind.BUSY
    driver = _driver_error(exc)
    state = sqlstate_of(driver)
    if state is not None:
        if state.startswith("08") or state in _CONNECTION_SQLSTATES:
            return ErrorKind.CONNECTION
        if state == "25006":
            return ErrorKind.READ_ONLY
        if state in _CONFLICT_SQLSTATES:
            return ErrorKind.TRANSACTION_CONFLICT
        if state in _CONFIGURATION_SQLSTATES:
            return ErrorKind.CONFIGURATION
        return ErrorKind.OTHER
    return _classify_without_sqlstate(exc, driver)


def _is_busy(exc: BaseException) -> bool:
    """The server, PgBouncer or the pool said "full" (see :mod:`.server_messages`)."""
    import psycopg
    from psycopg_pool import PoolTimeout, TooManyRequests

    for error in causes(exc):
        if isinstance(error, DatabaseBusy | PoolTimeout | TooManyRequests):
            return True
        if not isinstance(error, psycopg.Error):
            continue
        state = getattr(error, "sqlstate", None)
        if state == _BUSY_SQLSTATE:
            return True
        # At connect time there is no SQLSTATE (libpq keeps none), and PgBouncer's
        # limits come as 08P01, a connection-class code: the words tell.
        if state in (None, "08P01") and isinstance(error, psycopg.OperationalError):
            message = str(error).lower()
            if any(phrase in message for phrase in _BUSY_PHRASES):
                return True
    return False


def is_busy(exc: BaseException) -> bool:
    """True when ``exc`` means "the database is up but full right now" (:attr:`ErrorKind.BUSY`)."""
    return classify(exc) is ErrorKind.BUSY


def _classify_without_sqlstate(exc: BaseException, driver: BaseException) -> ErrorKind:
    import psycopg

    if isinstance(driver, psycopg.OperationalError | psycopg.InterfaceError):
        message = str(driver).lower()
        if any(words in message for words in _CONFIGURATION_MESSAGES):
            return ErrorKind.CONFIGURATION
        return ErrorKind.CONNECTION
    if isinstance(driver, ConnectionError | TimeoutError):
        return ErrorKind.CONNECTION
    # Django's own "connection already closed" InterfaceError has no cause.
    from django.db import InterfaceError

    if isinstance(exc, InterfaceError) and "closed" in str(exc).lower():
        return ErrorKind.CONNECTION
    return ErrorKind.OTHER


#: The kinds after which a connection is dropped and the server looked for again.
FAILOVER_KINDS = frozenset({ErrorKind.CONNECTION, ErrorKind.READ_ONLY})


def is_failover(exc: BaseException) -> bool:
    """True when ``exc`` means the connection is lost or landed on a demoted node.

    The one predicate the backend, the breaker and the retry helper share.
    """
    return classify(exc) in FAILOVER_KINDS


def is_availability_error(exc: BaseException) -> bool:
    """True when ``exc`` means "the database cannot serve this right now": down or busy.

    This is what the 503 middleware and the webhook views answer with a 503, and
    what a task queue retries later; everything else (an IntegrityError, a bug)
    stays what it is. See :func:`is_busy` to tell a full database from a gone one.
    """
    from django.db import InterfaceError
    from django.db import OperationalError as DjangoOperationalError

    if isinstance(exc, FailoverError | DatabaseUnavailable | DatabaseBusy):
        return True
    import psycopg

    if not isinstance(
        exc,
        DjangoOperationalError | InterfaceError | psycopg.OperationalError | psycopg.InterfaceError,
    ):
        return False
    return classify(exc) in _AVAILABILITY_KINDS


_AVAILABILITY_KINDS = frozenset({*FAILOVER_KINDS, ErrorKind.BUSY})
