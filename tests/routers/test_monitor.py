"""The measurement cache: one refresh at a time, in the background, never one per read."""

from __future__ import annotations

import threading

from django_pg_resilience.routers.monitor import ReplicaMonitor
from django_pg_resilience.routers.status import ReplicaStatus


class CountingMonitor(ReplicaMonitor):
    """A monitor whose measurement is a counter held open by an event (no database)."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__("primary", ["replica"], interval=1.0, timeout=0.5, clock=lambda: clock[0])
        self.clock = clock
        self.refreshes = 0
        self.release = threading.Event()
        self.finished = threading.Event()

    def refresh(self) -> None:
        self.refreshes += 1
        self._refreshed_at = self.clock[0]
        self.release.wait(10)
        self._statuses["replica"] = ReplicaStatus(
            "replica", self.clock[0], in_recovery=True, replay_position=1, lag=0.0
        )
        self.finished.set()


def test_many_reads_start_one_refresh_and_never_wait_for_it() -> None:
    clock = [100.0]
    monitor = CountingMonitor(clock)
    # The refresh is held open: every read returns at once with what is known.
    assert [monitor.status("replica") for _ in range(200)] == [None] * 200
    monitor.release.set()
    assert monitor.finished.wait(10)
    assert monitor.refreshes == 1
    assert monitor.status("replica") is not None

    clock[0] += 0.5  # within the interval: the cache answers
    monitor.finished.clear()
    for _ in range(100):
        monitor.status("replica")
    assert monitor.refreshes == 1

    clock[0] += 1.0  # stale: one more refresh
    monitor.status("replica")
    assert monitor.finished.wait(10)
    assert monitor.refreshes == 2


def test_a_measurement_too_old_is_not_trusted() -> None:
    clock = [100.0]
    monitor = CountingMonitor(clock)
    monitor.release.set()
    monitor.status("replica")
    assert monitor.finished.wait(10)
    assert monitor.status("replica") is not None
    # The probe is stuck (or the process was idle): the old figure is not used.
    monitor.release.clear()
    clock[0] += 10.0
    assert monitor.status("replica") is None
    monitor.release.set()


def test_a_request_that_found_a_replica_dead_marks_it_down_at_once() -> None:
    clock = [100.0]
    monitor = CountingMonitor(clock)
    monitor.release.set()
    monitor.status("replica")
    assert monitor.finished.wait(10)
    monitor.mark_down("replica", "DatabaseUnavailable")
    status = monitor.status("replica")
    assert status is not None and status.error == "DatabaseUnavailable"
