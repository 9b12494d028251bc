"""The connection budget: how many connection attempts one process makes to an alias at once.

Every web process, Celery worker and cron job of a shop reconnects in the same
second after a failover, and a new primary's first seconds are a connection
storm (DigitalOcean's smallest node has 22 client slots). Within one process,
the threads (and the async tasks, whose database work runs in threads) wait for
an attempt slot instead of all dialling at once: a fleet of ``P`` processes
makes at most ``P * connect_concurrency`` concurrent attempts, whatever the
thread count. A connection already open is never touched: the budget bounds
dialling, not working.

A caller waits for a slot within its operation's deadline; if none comes free in
time it gets :class:`~django_pg_resilience.errors.DatabaseBusy` (a 503 with a
short Retry-After), never a 500.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django_pg_resilience import stats
from django_pg_resilience.errors import DatabaseBusy

__all__ = ["ConnectSlots"]


class ConnectSlots:
    """At most ``limit`` connection attempts at a time (0: no bound). Thread-safe."""

    def __init__(self, alias: str, limit: int) -> None:
        self.alias = alias
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit) if limit > 0 else None
        self._lock = threading.Lock()
        #: Attempts in progress now, and the most seen at once (for benchmarks and health).
        self.in_use = 0
        self.peak = 0

    @contextmanager
    def attempt(self, timeout: float) -> Iterator[None]:
        """Hold one attempt slot for the ``with`` block, waiting at most ``timeout`` seconds for it.

        Raises :class:`DatabaseBusy` when no slot came free in time.
        """
        free = self._free
        if free is not None and not free.acquire(timeout=max(timeout, 0.0)):
            stats.increment("connect_slot_timeouts", self.alias)
            raise DatabaseBusy(
                f"Database {self.alias!r}: no connection attempt slot came free within "
                f"{timeout:.2f} s ({self.limit} at a time in this process: "
                "connect_concurrency); the database is slow to accept connections.",
                alias=self.alias,
            )
        with self._lock:
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._lock:
                self.in_use -= 1
            if free is not None:
                free.release()
