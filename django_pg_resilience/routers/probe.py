"""The lag probe: short, bounded connections of its own to the primary and each replica.

The probe never uses Django's connections (it runs in a background thread)
and never waits long: libpq's shortest connect timeout (2 s, or
REPLICA_CHECK_TIMEOUT when larger) and a statement timeout of
REPLICA_CHECK_TIMEOUT. A replica is connected to through its circuit breaker,
so a failed probe makes the breaker hold (the router then skips the replica at
once) and a successful one closes it again.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Any

import psycopg
from django.db import DatabaseError, connections

from django_pg_resilience.backend.alias import alias_state
from django_pg_resilience.backend.connection import ResilientConnection
from django_pg_resilience.backoff import RetryPolicy
from django_pg_resilience.errors import is_failover
from django_pg_resilience.routers.positions import parse_lsn
from django_pg_resilience.routers.status import ReplicaStatus, replay_lag

__all__ = ["ProbeConnections"]

_REPLICA_QUERY = (
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
    "pg_last_wal_receive_lsn()::text, "
    "EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8"
)
# The flush position is what a WAL sender streams: no replica can be past it.
_PRIMARY_QUERY = (
    "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn()::text END"
)
# A breaker that gives up raises Django's DatabaseUnavailable (a DatabaseError).
_PROBE_ERRORS = (psycopg.Error, DatabaseError, OSError)
# Django's keys that are no libpq options.
_NOT_LIBPQ = ("cursor_factory", "context", "pool", "server_side_binding")


def _probe_params(alias: str, timeout: float) -> dict[str, Any]:
    params = dict(connections[alias].get_connection_params())
    for key in _NOT_LIBPQ:
        params.pop(key, None)
    params["connect_timeout"] = max(2, math.ceil(timeout))
    statement_timeout = f"-c statement_timeout={max(int(timeout * 1000), 1)}"
    params["options"] = f"{params.get('options', '')} {statement_timeout}".strip()
    params["autocommit"] = True
    return params


class ProbeConnections:
    """The probe's connections, kept between probes: one per alias, each used by one
    thread at a time (the refresh measures several aliases in parallel)."""

    def __init__(self, primary: str, timeout: float) -> None:
        self.primary = primary
        self.timeout = timeout
        self._connections: dict[str, ResilientConnection] = {}
        self._lock = threading.Lock()

    def primary_position(self) -> int | None:
        """The primary's flush position, or None when it cannot be read now."""
        try:
            connection = self._connection(self.primary, through_breaker=False)
            row = connection.execute(_PRIMARY_QUERY).fetchone()
        except _PROBE_ERRORS:
            self.drop(self.primary)
            return None
        return parse_lsn(row[0]) if row else None

    def measure(self, alias: str, primary_position: int | None) -> ReplicaStatus:
        """One measurement of replica ``alias`` (an unreachable one gets ``error``)."""
        if alias_state(alias).breaker.state != "closed":
            # Only a new connection through the breaker can close it again.
            self.drop(alias)
        with self._lock:
            reused = alias in self._connections
        try:
            row = self._query_replica(alias)
        except _PROBE_ERRORS as exc:
            self.drop(alias)
            if not reused:
                return ReplicaStatus(alias, time.monotonic(), error=type(exc).__name__)
            # The kept connection died: a new one, through the breaker, tells
            # the breaker (and so every request) whether the replica is gone.
            try:
                row = self._query_replica(alias)
            except _PROBE_ERRORS as exc:
                self.drop(alias)
                return ReplicaStatus(alias, time.monotonic(), error=type(exc).__name__)
        assert row is not None
        in_recovery, replay_text, receive_text, seconds = row
        if not in_recovery:
            return ReplicaStatus(alias, time.monotonic(), in_recovery=False)
        replay = parse_lsn(replay_text)
        reference = primary_position if primary_position is not None else parse_lsn(receive_text)
        return ReplicaStatus(
            alias,
            time.monotonic(),
            in_recovery=True,
            replay_position=replay,
            lag=replay_lag(replay, reference, seconds),
        )

    def _query_replica(self, alias: str) -> tuple[Any, ...] | None:
        connection = self._connection(alias, through_breaker=True)
        return connection.execute(_REPLICA_QUERY).fetchone()

    def drop(self, alias: str) -> None:
        with self._lock:
            connection = self._connections.pop(alias, None)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def forget(self) -> None:
        """Let go of every connection without closing it (a forked child's copies)."""
        self._lock = threading.Lock()
        self._connections.clear()

    def close(self) -> None:
        with self._lock:
            aliases = list(self._connections)
        for alias in aliases:
            self.drop(alias)

    def _connection(self, alias: str, *, through_breaker: bool) -> ResilientConnection:
        with self._lock:
            connection = self._connections.get(alias)
        if connection is not None and not connection.closed:
            return connection
        params = _probe_params(alias, self.timeout)
        if through_breaker:
            connection = alias_state(alias).breaker.call(
                lambda _remaining: self._connect(params),
                RetryPolicy(deadline=self.timeout, max_attempts=1).start(),
                is_retryable=is_failover,
            )
        else:
            connection = self._connect(params)
        with self._lock:
            self._connections[alias] = connection
        return connection

    def _connect(self, params: dict[str, Any]) -> ResilientConnection:
        connection = ResilientConnection.connect(**params)
        # A server that hangs without closing (a blackholed path) would hold the
        # probe until TCP gives up; the statement timeout cannot reach it.
        connection.io_timeout = self.timeout * 2
        return connection
