"""A full database is busy, not down: one log line per episode, a counter per refusal.

"sorry, too many clients already" (53300) is what a *healthy* database answers in
the first seconds after a failover, when every process of a shop reconnects at
once; PgBouncer's limits and a pool's queue say the same. A busy refusal never
opens the circuit breaker and never marks working connections stale; the
caller backs off with full jitter and retries within its own deadline (see
``busy_backoff_base`` / ``busy_backoff_cap``), and past it gets
:class:`~django_pg_resilience.errors.DatabaseBusy`: a 503 with a short
Retry-After.
"""

from __future__ import annotations

import logging
import threading
import time

from django_pg_resilience import stats
from django_pg_resilience.backoff import RetryPolicy
from django_pg_resilience.errors import sqlstate_of
from django_pg_resilience.server_messages import PGBOUNCER_BUSY_PHRASES

__all__ = ["BusyEpisode", "busy_reason"]

logger = logging.getLogger("django_pg_resilience")

#: A refusal this long after the previous one starts a new episode (a new log line).
EPISODE_GAP = 10.0


def busy_reason(exc: BaseException) -> str:
    """A short, secret-free label for a busy refusal: ``53300``, PgBouncer's limit, the pool's."""
    from psycopg_pool import PoolTimeout, TooManyRequests

    from django_pg_resilience.errors import DatabaseBusy, causes

    for error in causes(exc):
        if isinstance(error, TooManyRequests):
            return "connection pool queue full (max_waiting)"
        if isinstance(error, PoolTimeout):
            return "connection pool timeout"
        message = str(error).lower()
        for phrase in PGBOUNCER_BUSY_PHRASES:
            if phrase in message:
                return f"PgBouncer: {phrase}"
        if isinstance(error, DatabaseBusy) and error.__cause__ is None:
            return "connection attempt slots of this process"
    return sqlstate_of(exc) or "53300"


class BusyEpisode:
    """Busy refusals of one alias in this process: counted each, logged once per episode.

    An episode is a run of refusals less than :data:`EPISODE_GAP` apart. Callers that get
    in meanwhile (a squeeze lets some through) do not end it: the next refusal within the
    gap is the same episode, and logs nothing more.
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._clock = time.monotonic
        self._lock = threading.Lock()
        self._since: float | None = None
        self._last: float = 0.0
        self._recovery_logged = False
        self.refusals = 0
        #: Refusals in a row (a success ends the run), and the moment before which no
        #: caller of this process dials (monotonic).
        self._streak = 0
        self._retry_at = 0.0

    def seconds_to_retry(self) -> float:
        """How long callers of this process hold back before dialling (0: dial now)."""
        retry_at = self._retry_at
        return 0.0 if retry_at == 0.0 else max(retry_at - self._clock(), 0.0)

    @property
    def active(self) -> bool:
        """True while refusals keep coming (the last one less than EPISODE_GAP ago)."""
        return self._since is not None and self._clock() - self._last < EPISODE_GAP

    def refused(
        self, exc: BaseException, where: str, backoff: RetryPolicy, *, answered: bool = True
    ) -> None:
        """A connection attempt to ``where`` (host:port) was refused as full.

        ``answered``: the server (or PgBouncer) said so, which holds the whole process
        back by ``backoff``; a caller that found no attempt slot of its own process did
        not ask the server, and does not.
        """
        stats.increment("busy_errors", self.alias)
        now = self._clock()
        with self._lock:
            starts = self._since is None or now - self._last >= EPISODE_GAP
            if starts:
                self._since = now
                self.refusals = 0
                self._recovery_logged = False
            self.refusals += 1
            self._last = now
            if answered:
                self._streak += 1
                self._retry_at = max(self._retry_at, now + backoff.delay(self._streak))
        if starts:
            logger.warning(
                "Database %r busy: connection slots exhausted on %s (%s). Not an outage: "
                "callers back off and retry within their deadline (logged once per episode).",
                self.alias,
                where,
                busy_reason(exc),
            )

    def connected(self) -> None:
        """A connection succeeded: the run of refusals ends; the first success of an episode
        says the database lets us in."""
        if self._streak == 0 and (self._since is None or self._recovery_logged):
            return  # the happy path: three attribute reads
        with self._lock:
            self._streak = 0
            self._retry_at = 0.0
            if self._since is None or self._recovery_logged:
                return
            self._recovery_logged = True
            since, refusals = self._since, self.refusals
        logger.info(
            "Database %r lets connections in again, %.2f s into a busy episode (%d refusals "
            "so far).",
            self.alias,
            self._clock() - since,
            refusals,
        )
