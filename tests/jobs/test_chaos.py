"""1,000 order jobs through a primary crash, a promotion and a SIGKILLed worker process.

Every job takes effect exactly once, none is lost and none fails: what the
idempotent task promises with ``acks_late`` and a real prefork worker. The
standby is synchronous, so a commit the worker saw acknowledged survives the
crash (with asynchronous replication the last commits before a crash may be
lost by PostgreSQL itself, whatever the task does).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
from celery.result import AsyncResult

from django_pg_resilience.contrib.celery.models import JobRecord
from django_pg_resilience.testing import LocalCluster
from tests.jobs.conftest import StartWorker, wait_ready
from tests.jobs.jobs import place_order
from tests.jobs.ledger import rows_by_order, wait_logged, wait_rows

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

ORDERS = 1000
#: Seconds the sender takes for all orders: the faults land while jobs flow.
SEND_SECONDS = 8.0


def test_order_jobs_take_effect_once_through_a_failover_and_a_killed_worker_process(
    start_worker: StartWorker, jobs_cluster: LocalCluster
) -> None:
    cluster = jobs_cluster
    standby = cluster.standbys[0]
    cluster.set_synchronous(standby)
    rng = random.Random(1016)
    orders = list(range(1, ORDERS + 1))
    twice = sorted(rng.sample(orders, ORDERS // 5))
    same_instant, later = set(twice[::2]), twice[1::2]
    sent: list[tuple[int, AsyncResult]] = []

    def send() -> None:
        for order in orders:
            sent.append((order, place_order.delay(order)))
            if order in same_instant:
                sent.append((order, place_order.delay(order)))
            time.sleep(SEND_SECONDS / ORDERS)

    started = time.monotonic()
    with start_worker() as worker:
        wait_ready(worker)
        sender = threading.Thread(target=send)
        sender.start()
        old_primary = cluster.primary
        wait_rows(old_primary, ORDERS // 5, 60)
        cluster.kill(old_primary)
        # The endpoint stays on the dead primary until tasks have outlasted the
        # backend's deadline and gone back to Celery: a failover that takes a while.
        wait_logged(worker, "retrying in", 60)
        new_primary = cluster.promote(standby)
        cluster.endpoint.point_to(new_primary)
        wait_rows(new_primary, ORDERS * 2 // 5, 60)
        killed = worker.kill_child()
        sender.join(60)
        # The senders' own retries, after everything else: these find stored outcomes.
        sent.extend((order, place_order.delay(order)) for order in later)
        deadline = time.monotonic() + 90
        while not all(result.ready() for _, result in sent):
            assert time.monotonic() < deadline, f"jobs unfinished at the deadline\n{worker.tail()}"
            time.sleep(0.2)
        log = worker.tail(100_000)
    retried = log.count("retrying in")
    states = Counter(result.state for _, result in sent)
    assert states == Counter({"SUCCESS": ORDERS + len(twice)}), f"{states}\n{log}"
    assert retried > 0
    assert f"pid:{killed} exited with 'signal 9 (SIGKILL)'" in log
    counts = rows_by_order(new_primary)
    assert counts == Counter(orders), (
        f"lost: {sorted(set(orders) - set(counts))[:10]}, "
        f"duplicated: {sorted(o for o, n in counts.items() if n > 1)[:10]}"
    )
    outcomes: dict[int, object] = {}
    for order, result in sent:
        # A re-sent job returns the outcome of the run that took effect.
        assert outcomes.setdefault(order, result.result) == result.result
    (keys,) = new_primary.query(f"SELECT count(*) FROM {JobRecord._meta.db_table}")[0]
    assert keys == ORDERS
    elapsed = time.monotonic() - started
    print(
        f"celery chaos: {len(sent)} sends, {retried} Celery retries, all SUCCESS in {elapsed:.1f} s"
    )
