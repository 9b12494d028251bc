"""Is the server still working on my statement? Silent-peer detection.

A server that dies while the path to it still acknowledges data (a userspace
proxy, PgBouncer in front of a dead server, a stuck middlebox), or a peer that
answers nothing at all, leaves a statement waiting for the client's whole
timeout: keepalives and ``tcp_user_timeout`` never fire while something ACKs.
A long query is legitimate, so a timer alone cannot tell the two apart.

So a statement that has waited ``liveness_after`` seconds asks, out of band,
over a fresh connection through the same endpoint: is my session still running
on the same server? One check at a time per process and alias, shared by every
statement waiting on that alias, at most one per ``liveness_interval``:

* the endpoint does not answer in time: **unreachable**;
* it answers as another server (a failover moved the endpoint): **replaced**;
* it answers as the same server and the waiting session's backend is gone, or
  idle (the answer was sent and lost on the way): **gone**;
* otherwise (running, or waiting on a lock): alive, keep waiting.

Behind a transaction pooler the client's backend PID is the pooler's, not the
server's, so only the first two verdicts are available there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from django_pg_resilience import stats
from django_pg_resilience.backend.identity import IdentityTracker, read_identity
from django_pg_resilience.breaker import DIRECT, CircuitBreaker
from django_pg_resilience.errors import ErrorKind, classify, is_failover

__all__ = ["ConnectionWatch", "LivenessMonitor"]

#: States of a backend that is no longer working on a statement.
_IDLE_STATES = frozenset({"idle", "idle in transaction", "idle in transaction (aborted)"})

_REPLACED = "the server behind the endpoint changed (failover)"

_CHECK_SQL = (
    "SELECT pg_backend_pid(), (SELECT coalesce(json_object_agg(pid::text, coalesce(state, '')),"
    " '{}') FROM pg_stat_activity WHERE pid = ANY(%s))"
)


@dataclass
class ConnectionWatch:
    """What the liveness check needs to know about one open connection."""

    #: The monitor of the connection's alias (its AliasState's).
    monitor: LivenessMonitor = field(repr=False)
    #: time.monotonic() when the connection was opened.
    opened_at: float
    #: Seconds a statement waits before its server is checked (0: never).
    liveness_after: float
    liveness_interval: float
    #: Opens a fresh connection through the same endpoint within a timeout.
    connect: Callable[[float], psycopg.Connection[Any]] = field(repr=False)
    #: The alias's identity epoch when the connection was opened.
    epoch: int = 0


@dataclass(frozen=True)
class _CheckResult:
    started: float
    reason: str | None = None
    #: backend PID -> state, when the PIDs the client sees are the server's.
    states: dict[int, str] | None = None


class LivenessMonitor:
    """The liveness checks of one alias in this process. Thread-safe.

    Owned by the alias's :class:`~django_pg_resilience.backend.alias.AliasState`,
    with the alias's breaker (a check that finds the endpoint gone records the
    failure there, under the alias's own thresholds) and server identity.
    """

    def __init__(self, alias: str, breaker: CircuitBreaker, identity: IdentityTracker) -> None:
        self.alias = alias
        self._breaker = breaker
        self._identity = identity
        self._lock = threading.Lock()
        self._checking = False
        self._result: _CheckResult | None = None
        #: PIDs of the sessions waiting now -> when they started asking.
        self._waiting: dict[int, float] = {}

    def verdict(self, pid: int, watch: ConnectionWatch) -> str | None:
        """Why the statement on backend ``pid`` should be abandoned, or None to keep waiting.

        Never blocks longer than one check: the caller that finds a check due
        runs it; the others keep waiting for their statement and ask again.
        """
        outage_since = self._breaker.outage_since
        if outage_since is not None and outage_since >= watch.opened_at:
            return "the database became unreachable after this connection was opened"
        if self._identity.epoch != watch.epoch:
            return _REPLACED
        now = time.monotonic()
        with self._lock:
            asked_at = self._waiting.setdefault(pid, now)
            result = self._result
            if result is not None and result.started >= asked_at:
                reason = self._judge(result, pid)
                if reason is not None:
                    return reason
            # Alive at the last check is no promise for the next interval: a
            # statement that runs for minutes is checked again every interval.
            due = result is None or now - result.started >= watch.liveness_interval
            if self._checking or not due:
                return None
            self._checking = True
            pids = list(self._waiting)
        try:
            result = self._check(watch, pids, now)
        finally:
            with self._lock:
                self._checking = False
        with self._lock:
            self._result = result
            return self._judge(result, pid)

    def done(self, pid: int) -> None:
        """The statement on ``pid`` stopped waiting."""
        with self._lock:
            self._waiting.pop(pid, None)

    def _judge(self, result: _CheckResult, pid: int) -> str | None:
        if result.reason is not None:
            return result.reason
        if result.states is None:
            return None
        state = result.states.get(pid)
        if state is None:
            return "the server no longer has this session"
        if state in _IDLE_STATES:
            return "idle"
        return None

    def _check(self, watch: ConnectionWatch, pids: list[int], started: float) -> _CheckResult:
        stats.increment("liveness_checks", self.alias)
        try:
            check = watch.connect(watch.liveness_interval)
        except Exception as exc:
            # A full server (53300) answered: it is up, so nothing is known of the
            # session; like any other non-connection error, keep waiting.
            if classify(exc) is not ErrorKind.CONNECTION:
                return _CheckResult(started)
            self._breaker.record_failure(DIRECT, exc, None, started)
            return _CheckResult(started, "the endpoint did not answer a fresh connection")
        try:
            with check:
                current = read_identity(check)
                if self._identity.observe(current) is not None:
                    return _CheckResult(started, _REPLACED)
                row = check.execute(_CHECK_SQL, (pids,)).fetchone()
                own_pid = check.info.backend_pid
        except psycopg.Error as exc:
            if check.closed and is_failover(exc):
                # Connected, then no answer: the endpoint went silent under the check.
                return _CheckResult(started, "the endpoint stopped answering a fresh connection")
            return _CheckResult(started)
        if row is None or row[0] != own_pid:
            return _CheckResult(started)  # a pooler's PIDs: the server's are not ours to compare
        return _CheckResult(started, states={int(pid): state for pid, state in row[1].items()})
