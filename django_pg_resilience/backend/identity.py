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

__all__ = ["IdentityTracker", "ServerIdentity", "read_identity"]

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


class IdentityTracker:
    """The server identity of one alias as this process knows it. Thread-safe.

    Owned by the alias's :class:`~django_pg_resilience.backend.alias.AliasState`.
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._lock = threading.Lock()
        self._known: ServerIdentity | None = None
        #: Bumped each time the server is seen to change.
        self.epoch = 0
        #: When (time.monotonic()) an identity was last read, or None.
        self._observed_at: float | None = None

    @property
    def known(self) -> ServerIdentity | None:
        """The identity last observed (the baseline failovers are told from)."""
        return self._known

    def has_baseline(self) -> bool:
        """True once an identity was recorded in this process."""
        return self._known is not None

    def observed_since(self, instant: float) -> bool:
        """True if an identity was read at or after ``instant`` (monotonic)."""
        observed_at = self._observed_at
        return observed_at is not None and observed_at >= instant

    def observe(self, identity: ServerIdentity | None) -> ServerIdentity | None:
        """Record ``identity``; return the previous one if the server changed.

        Many threads reconnecting after one failover report it once: the first to
        see the new identity records it, the others find it already known.
        """
        if identity is None:
            return None
        with self._lock:
            previous = self._known
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
            self._known = identity
            self._observed_at = time.monotonic()
            if previous is None or previous == identity:
                return None
            self.epoch += 1
        stats.increment("failovers", self.alias)
        logger.warning(
            "Failover detected on database %r: server changed from %s to %s.",
            self.alias,
            _describe(previous),
            _describe(identity),
        )
        signals.failover_detected.send(
            sender=ServerIdentity,
            alias=self.alias,
            previous=previous.as_dict(),
            current=identity.as_dict(),
        )
        return previous


def _describe(identity: ServerIdentity) -> str:
    return f"{identity.address}:{identity.port} timeline {identity.timeline}"
