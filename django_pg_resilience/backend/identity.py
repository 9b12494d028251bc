"""Which server an alias talks to, and noticing when that changes (a failover).

The identity is read with one query, and only when it can have changed: on the
first connection of the process for an alias (the baseline) and on a
connection made after an error, unless another connection of the process
already read it since that error (after a failover, the first thread to
reconnect reads it; the others, reconnecting to the same endpoint a moment
later, do not add a round trip each to the new primary's busiest second).
The happy path never pays for it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from django_pg_resilience import signals, stats

__all__ = [
    "ServerIdentity",
    "epoch",
    "forget",
    "has_baseline",
    "observe",
    "observed_since",
    "read_identity",
]

logger = logging.getLogger("django_pg_resilience")

# The timeline is the first 8 hex digits of the current WAL file name: it moves
# the instant a standby is promoted, unlike pg_control_checkpoint(), which waits
# for the next checkpoint. A standby has no current WAL position: NULL.
_IDENTITY_SQL = (
    "SELECT system_identifier::text,"
    " CASE WHEN pg_is_in_recovery() THEN NULL"
    " ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END,"
    " host(inet_server_addr()), inet_server_port()"
    " FROM pg_control_system()"
)


@dataclass(frozen=True)
class ServerIdentity:
    """What tells one PostgreSQL server (and its history) from another."""

    system_identifier: str | None
    timeline: str | None
    address: str | None
    port: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_identity(connection: psycopg.Connection[Any]) -> ServerIdentity | None:
    """Read the identity over ``connection`` (one round trip), or None if it cannot be read.

    A lost connection raises (the caller's connect attempt failed); anything
    else (no permission on a managed service, say) only means no identity.
    """
    was_autocommit = connection.autocommit
    try:
        if not was_autocommit:
            connection.autocommit = True  # no round trip on an idle connection
        row = connection.execute(_IDENTITY_SQL).fetchone()
    except psycopg.Error:
        if connection.closed:
            raise
        return None
    finally:
        if not was_autocommit and not connection.closed:
            connection.autocommit = False
    if row is None:
        return None
    return ServerIdentity(row[0], row[1], row[2], row[3])


_known: dict[str, ServerIdentity] = {}
#: Bumped for an alias each time its server is seen to change.
_epochs: dict[str, int] = {}
#: When (time.monotonic()) an identity was last read for each alias.
_observed_at: dict[str, float] = {}
_lock = threading.Lock()


def epoch(alias: str) -> int:
    """A number that changes each time a failover of ``alias`` is detected."""
    return _epochs.get(alias, 0)


def has_baseline(alias: str) -> bool:
    """True once an identity was recorded for ``alias`` in this process."""
    return alias in _known


def observed_since(alias: str, instant: float) -> bool:
    """True if an identity was read for ``alias`` at or after ``instant`` (monotonic)."""
    return _observed_at.get(alias, float("-inf")) >= instant


def observe(alias: str, identity: ServerIdentity | None) -> ServerIdentity | None:
    """Record ``identity`` for ``alias``; return the previous one if the server changed.

    Many threads reconnecting after one failover report it once: the first to
    see the new identity records it, the others find it already known.
    """
    if identity is None:
        return None
    with _lock:
        previous = _known.get(alias)
        if (
            previous is not None
            and previous != identity
            and identity.timeline is None
            and previous.system_identifier == identity.system_identifier
        ):
            # A standby of the same cluster (a read-only session about to be
            # retried): not a new primary, not the baseline to compare with,
            # and not an answer for threads reconnecting after an error.
            return None
        _known[alias] = identity
        _observed_at[alias] = time.monotonic()
        if previous is None or previous == identity:
            return None
        _epochs[alias] = _epochs.get(alias, 0) + 1
    stats.increment("failovers", alias)
    logger.warning(
        "Failover detected on database %r: server changed from %s to %s.",
        alias,
        _describe(previous),
        _describe(identity),
    )
    signals.failover_detected.send(
        sender=ServerIdentity, alias=alias, previous=previous.as_dict(), current=identity.as_dict()
    )
    return previous


def forget(alias: str | None = None) -> None:
    """Drop the recorded identities (for tests)."""
    with _lock:
        if alias is None:
            _known.clear()
            _observed_at.clear()
            _epochs.clear()
        else:
            _known.pop(alias, None)
            _observed_at.pop(alias, None)
            _epochs.pop(alias, None)


def _describe(identity: ServerIdentity) -> str:
    return f"{identity.address}:{identity.port} timeline {identity.timeline}"
