"""The drill's background jobs (``--jobs N``): a Celery worker fulfils orders through the failover.

A Redis of its own as the broker and a ``celery worker`` (prefork, 2 processes)
on the shop's settings, reaching the database through the same endpoint as the
site. While the traffic runs, N ``shop.fulfil_order`` jobs are sent at a steady
pace (a fifth of them twice: half at the same instant, half after the traffic,
as a sender's retry); during the outage one pool process is SIGKILLed. The
report says whether every job took effect exactly once and none failed.

The standby is made synchronous: a commit the worker saw succeed must survive
the crash (with asynchronous replication PostgreSQL itself may lose the last
ones, whatever the job does).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django_pg_resilience.testing.jobs import CeleryWorker, RedisServer
from example_project.drill.stack import ROOT, Stack

TASK = "shop.fulfil_order"
#: The share of jobs sent twice.
DUPLICATE_RATIO = 0.2
#: Seconds after the traffic's drain to wait for the last jobs: a job in an
#: outage tries again within JOB_OUTAGE_RETRY_CAP (60 s by default) of the move.
FINISH_TIMEOUT = 120.0


class JobRun:
    """The broker, the worker, the sender thread and what they did."""

    def __init__(self, stack: Stack, count: int, log: Path) -> None:
        self.stack = stack
        self.count = count
        self.redis = RedisServer()
        self.worker: CeleryWorker | None = None
        self.log = log
        self.results: list[tuple[int, Any]] = []
        self.later: list[int] = []
        self.killed: dict[str, Any] = {}
        self.errors: list[BaseException] = []
        self._thread: threading.Thread | None = None
        self._app: Any = None

    def start(self, timeout: float = 60.0) -> None:
        from celery import Celery

        cluster = self.stack.cluster
        assert cluster is not None
        cluster.set_synchronous(cluster.standbys[0])
        self.redis.start()
        broker, backend = f"{self.redis.url}/0", f"{self.redis.url}/1"
        env = {
            **self.stack.env(),
            "CELERY_BROKER_URL": broker,
            "CELERY_RESULT_BACKEND": backend,
        }
        self.worker = CeleryWorker("example_project.celery_app", env=env, log=self.log, cwd=ROOT)
        self.worker.start()
        self._app = Celery("drill", broker=broker, backend=backend, set_as_current=False)
        deadline = time.monotonic() + timeout
        while not self._app.control.ping(timeout=0.5):
            if self.worker.process is None or self.worker.process.poll() is not None:
                raise RuntimeError(f"the celery worker exited; see {self.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the celery worker did not answer within {timeout:g} s")

    def send_during(self, duration: float, fault_at: float) -> None:
        """Send the jobs over ``duration`` s from now (+0.5, the traffic's start); kill a pool
        process half a second after ``fault_at``."""
        started_at = time.monotonic() + 0.5

        def send() -> None:
            try:
                self._send(started_at, duration, fault_at)
            except BaseException as exc:  # reported by finish()
                self.errors.append(exc)

        self._thread = threading.Thread(target=send, name="drill-jobs", daemon=True)
        self._thread.start()

    def _send(self, started_at: float, duration: float, fault_at: float) -> None:
        assert self.worker is not None
        rng = random.Random(16)
        orders = list(range(1, self.count + 1))
        twice = sorted(rng.sample(orders, int(self.count * DUPLICATE_RATIO)))
        same_instant, self.later = set(twice[::2]), twice[1::2]
        for n, order in enumerate(orders):
            due = started_at + duration * n / self.count
            if not self.killed and time.monotonic() >= started_at + fault_at + 0.5:
                self.killed = {
                    "pid": self.worker.kill_child(),
                    "at": round(time.monotonic() - started_at, 3),
                }
            time.sleep(max(0.0, due - time.monotonic()))
            self.results.append((order, self._app.send_task(TASK, args=(order,))))
            if order in same_instant:
                self.results.append((order, self._app.send_task(TASK, args=(order,))))

    def finish(self, moved_at: float | None = None) -> dict[str, Any]:
        """Send the late duplicates, wait for every job, and count the fulfilments.

        ``moved_at``: the Unix time the endpoint moved, to say how long after it
        the jobs sent before it finished.
        """
        assert self.worker is not None and self.stack.cluster is not None
        if self._thread is not None:
            self._thread.join(120)
        # The jobs sent during the traffic: the ones an outage can hold back.
        backlog = list(self.results)
        self.results.extend(
            (order, self._app.send_task(TASK, args=(order,))) for order in self.later
        )
        deadline = time.monotonic() + FINISH_TIMEOUT
        while time.monotonic() < deadline and not all(r.ready() for _, r in self.results):
            time.sleep(0.2)
        states = Counter(result.state for _, result in self.results)
        rows = self.stack.cluster.primary.query(
            "SELECT order_ref, count(*) FROM shop_fulfilment GROUP BY 1"
        )
        fulfilled = {int(order): int(n) for order, n in rows}
        lost = sorted(order for order in range(1, self.count + 1) if order not in fulfilled)
        duplicated = sum(n - 1 for n in fulfilled.values())
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        drained = None
        if moved_at is not None:
            ends = [
                result.date_done.timestamp() - moved_at
                for _, result in backlog
                if result.ready() and result.date_done is not None
            ]
            drained = round(max(ends), 3) if ends else None
        return {
            "jobs": self.count,
            "messages_sent": len(self.results),
            "states": dict(states),
            # Celery copies what a pool process writes to stderr into its own log
            # ("[...: WARNING/ForkPoolWorker-1] ..."): count each retry once.
            "celery_retries": sum(
                1
                for line in log.splitlines()
                if "retrying in" in line and "/ForkPoolWorker" not in line
            ),
            "pool_process_killed": self.killed or None,
            "fulfilled_orders": len(fulfilled),
            "lost": len(lost),
            "lost_orders": lost[:20],
            "duplicated": duplicated,
            "failed": states.get("FAILURE", 0),
            "unfinished": sum(
                n for state, n in states.items() if state not in ("SUCCESS", "FAILURE")
            ),
            "drained_after_move": drained,
            "sender_error": repr(self.errors[0]) if self.errors else None,
            "worker_log": str(self.log),
        }

    def close(self) -> None:
        try:
            if self.worker is not None:
                self.worker.close()
        finally:
            self.redis.close()


def merge(summary: dict[str, Any], jobs: Mapping[str, Any]) -> None:
    """Add the jobs' figures and invariants to the drill's summary."""
    summary["jobs"] = dict(jobs)
    summary["invariants"].update(
        {
            "no_lost_job": jobs["lost"] == 0 and jobs["unfinished"] == 0,
            "no_duplicated_job": jobs["duplicated"] == 0,
            "no_failed_job": jobs["failed"] == 0 and jobs["sender_error"] is None,
        }
    )
    summary["ok"] = all(summary["invariants"].values())


def render(jobs: Mapping[str, Any]) -> str:
    killed = jobs["pool_process_killed"]
    lines = [
        "Background jobs (Celery, prefork x 2, Redis)",
        f"  jobs / messages sent (duplicates incl.)   {jobs['jobs']} / {jobs['messages_sent']}",
        f"  task states                               {jobs['states']}",
        f"  retried by Celery after an outage         {jobs['celery_retries']}",
        "  last job done after the endpoint moved    "
        + (f"{jobs['drained_after_move']:.2f} s" if jobs.get("drained_after_move") else "-"),
        "  pool process SIGKILLed                    "
        + (f"pid {killed['pid']} at t={killed['at']}s" if killed else "no"),
        f"  orders fulfilled                          {jobs['fulfilled_orders']}",
        f"  lost / duplicated / failed / unfinished   {jobs['lost']} / {jobs['duplicated']} / "
        f"{jobs['failed']} / {jobs['unfinished']}",
        f"  worker log                                {jobs['worker_log']}",
    ]
    return "\n".join(lines)
