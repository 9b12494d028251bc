"""The per-process cache of replica measurements, refreshed in the background.

A request never waits for a measurement: it reads the cache, and when the
cache is older than REPLICA_CHECK_INTERVAL it starts one background refresh
(unless one is already running) and goes on with what it has. A refresh
measures the replicas in parallel, so a silent one does not leave the others
unmeasured for its connect timeout. A measurement
older than a few intervals (the probe is stuck, or the process was idle) is
not trusted: the router reads from the primary until a fresh one arrives.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

from django_pg_resilience import signals, stats
from django_pg_resilience.routers.probe import ProbeConnections
from django_pg_resilience.routers.status import ReplicaStatus

__all__ = ["ReplicaMonitor"]

logger = logging.getLogger("django_pg_resilience.routers")

#: A measurement older than this many intervals is not trusted.
_TRUSTED_INTERVALS = 4
#: Replicas measured at once, at most (each on its own connection).
MAX_PARALLEL_PROBES = 8


class ReplicaMonitor:
    """Measurements of ``replicas`` (aliases) against ``primary``, for this process."""

    def __init__(
        self,
        primary: str,
        replicas: Sequence[str],
        *,
        interval: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.replicas = tuple(replicas)
        self.interval = interval
        self._clock = clock
        self._statuses: dict[str, ReplicaStatus] = {}
        self._probe = ProbeConnections(primary, timeout)
        self._refreshed_at = -float("inf")
        self._after_fork()

    def _after_fork(self) -> None:
        self._pid = os.getpid()
        # Held by the one refresh running; a request only ever tries it.
        self._refreshing = threading.Lock()
        self._probe.forget()

    # --- reading (the request path) --------------------------------------

    def status(self, alias: str) -> ReplicaStatus | None:
        """The last trusted measurement of ``alias``, or None. Never blocks."""
        self.refresh_if_stale()
        status = self._statuses.get(alias)
        if status is None:
            return None
        if self._clock() - status.measured_at > self.interval * _TRUSTED_INTERVALS:
            return None
        return status

    def refresh_if_stale(self) -> None:
        if os.getpid() != self._pid:
            # A forked worker: the parent's lock and connections are not ours.
            self._after_fork()
            self._statuses = {}
            self._refreshed_at = -float("inf")
        if self._clock() - self._refreshed_at < self.interval:
            return
        if not self._refreshing.acquire(blocking=False):
            return
        thread = threading.Thread(
            target=self._refresh_and_release, name="pg-resilience-replica-probe", daemon=True
        )
        try:
            thread.start()
        except BaseException:
            self._refreshing.release()
            raise

    def mark_down(self, alias: str, error: str) -> None:
        """A request found ``alias`` unusable: skip it until a probe says otherwise."""
        self._statuses[alias] = ReplicaStatus(alias, self._clock(), error=error)

    # --- measuring (one thread at a time) ---------------------------------

    def _refresh_and_release(self) -> None:
        try:
            self.refresh()
        except Exception:
            logger.exception("The replica lag probe failed.")
        finally:
            self._refreshing.release()

    def refresh(self) -> None:
        """Measure every replica now (the background thread calls this; tests may too)."""
        self._refreshed_at = self._clock()
        primary_position = self._probe.primary_position()
        if len(self.replicas) == 1:
            self._record(self._probe.measure(self.replicas[0], primary_position))
        else:
            self._measure_in_parallel(primary_position)
        self._refreshed_at = self._clock()

    def _measure_in_parallel(self, primary_position: int | None) -> None:
        """Every replica at once (at most MAX_PARALLEL_PROBES), each recorded when measured:
        a silent one costs its own connect timeout, not the others' measurements."""
        slots = threading.BoundedSemaphore(MAX_PARALLEL_PROBES)

        def measure(alias: str) -> None:
            with slots:
                try:
                    self._record(self._probe.measure(alias, primary_position))
                except Exception:
                    logger.exception("The lag probe of replica %r failed.", alias)

        # Each measurement is bounded (connect_timeout, then io_timeout): so is the join.
        threads = [
            threading.Thread(
                target=measure, args=(alias,), name="pg-resilience-replica-probe", daemon=True
            )
            for alias in self.replicas
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _record(self, status: ReplicaStatus) -> None:
        previous = self._statuses.get(status.alias)
        self._statuses[status.alias] = status
        if status.error is None and not status.promoted:
            stats.set_gauge("replica_lag_seconds", status.alias, min(status.lag, 1e9))
        if status.promoted and (previous is None or not previous.promoted):
            logger.warning(
                "Replica %r answers as a primary (promoted); it gets no reads while it is one.",
                status.alias,
            )
            signals.replica_promoted.send(sender=ReplicaMonitor, alias=status.alias)
        if status.error is not None and (previous is None or previous.error is None):
            logger.warning(
                "Replica %r is unreachable (%s); reads go elsewhere.", status.alias, status.error
            )

    def close(self) -> None:
        with self._refreshing:
            self._probe.close()
