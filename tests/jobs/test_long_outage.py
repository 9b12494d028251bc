"""Order jobs through long outages: retried until the outage budget runs out, then parked.

A real prefork worker and Redis, a real cluster. The cap between retries is
shrunk so the tests fit CI's time (it changes how fast the jobs drain after the
outage and how many messages they send, not whether they take effect), and the
budget is scaled with the outage where the test is about the budget itself:
budget 30 s for a 20 s outage loses nothing; budget 10 s for the same outage
parks the jobs, and replaying them creates each order once.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter

import pytest
from celery.result import AsyncResult

from django_pg_resilience.contrib.celery import parking
from django_pg_resilience.contrib.celery.models import JobRecord, ParkedJob
from django_pg_resilience.contrib.celery.outage import OutageBudgetExceeded
from django_pg_resilience.testing import LocalCluster
from tests.jobs.app import app
from tests.jobs.conftest import StartWorker, wait_ready
from tests.jobs.jobs import JOBS_ALIAS, place_order
from tests.jobs.ledger import (
    lost_and_duplicated,
    rows_by_order,
    wait_done,
    wait_logged,
    wait_rows,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

#: The failover of the first test: longer than the old fixed retry count lasted (~25 s).
LONG_OUTAGE = 90.0
#: The scaled outage of the budget tests.
SCALED_OUTAGE = 20.0


def test_order_jobs_ride_through_a_90_second_failover_and_a_killed_worker_process(
    start_worker: StartWorker, jobs_cluster: LocalCluster
) -> None:
    cluster = jobs_cluster
    standby = cluster.standbys[0]
    cluster.set_synchronous(standby)
    orders = list(range(1, 201))
    twice = sorted(random.Random(22).sample(orders, len(orders) // 5))
    same_instant, later = set(twice[::2]), twice[1::2]
    sent: list[tuple[int, AsyncResult]] = []

    def send() -> None:
        for order in orders:
            sent.append((order, place_order.delay(order)))
            if order in same_instant:
                sent.append((order, place_order.delay(order)))
            time.sleep(4.0 / len(orders))

    # The default budget (1 h); a 10 s cap so the jobs drain within seconds of the promotion.
    with start_worker(settings={"JOB_OUTAGE_RETRY_CAP": 10}) as worker:
        wait_ready(worker)
        sender = threading.Thread(target=send)
        sender.start()
        old_primary = cluster.primary
        wait_rows(old_primary, 40, 60)
        cluster.kill(old_primary)
        crashed = time.monotonic()
        wait_logged(worker, "retrying in", 60)
        killed = worker.kill_child()
        sender.join(60)
        # The outage itself: the provider takes this long to promote and move the name.
        time.sleep(max(0.0, crashed + LONG_OUTAGE - time.monotonic()))
        new_primary = cluster.promote(standby)
        cluster.endpoint.point_to(new_primary)
        sent.extend((order, place_order.delay(order)) for order in later)
        wait_done([result for _, result in sent], worker, 120)
        log = worker.tail(100_000)
    states = Counter(result.state for _, result in sent)
    assert states == Counter({"SUCCESS": len(orders) + len(twice)}), f"{states}\n{log}"
    assert f"pid:{killed} exited with 'signal 9 (SIGKILL)'" in log
    # Retried well past what a count of 20 quick retries covered.
    outage_seen = max(int(s) for s in re.findall(r"unavailable \(\w+\) for (\d+) s", log))
    assert outage_seen >= 60, log[-3000:]
    counts = rows_by_order(new_primary)
    assert counts == Counter(orders), lost_and_duplicated(orders, counts)
    (keys,) = new_primary.query(f"SELECT count(*) FROM {JobRecord._meta.db_table}")[0]
    assert keys == len(orders)


def send(orders: list[int], queue: str) -> list[tuple[int, AsyncResult]]:
    """Each order once, a fifth of them twice, to ``queue``."""
    sent = []
    for order in orders:
        sent.append((order, place_order.apply_async((order,), queue=queue)))
        if order % 5 == 0:
            sent.append((order, place_order.apply_async((order,), queue=queue)))
    return sent


def test_a_budget_longer_than_the_outage_loses_nothing_and_a_shorter_one_parks_for_replay(
    start_worker: StartWorker, jobs_cluster: LocalCluster
) -> None:
    # Two workers, one outage: "roomy" has a 30 s budget, "tight" 10 s; the cut lasts 20 s.
    roomy_orders, tight_orders = list(range(1, 61)), list(range(1001, 1041))
    roomy_settings = {"JOB_OUTAGE_BUDGET": 30, "JOB_OUTAGE_RETRY_CAP": 4}
    tight_settings = {"JOB_OUTAGE_BUDGET": 10, "JOB_OUTAGE_RETRY_CAP": 4}
    endpoint = jobs_cluster.endpoint
    with (
        start_worker(settings=roomy_settings, queue="roomy") as roomy,
        start_worker(settings=tight_settings, queue="tight") as tight,
    ):
        wait_ready(roomy, queue="roomy")
        wait_ready(tight, queue="tight")
        endpoint.point_to(None)
        cut = time.monotonic()
        roomy_sent, tight_sent = send(roomy_orders, "roomy"), send(tight_orders, "tight")
        time.sleep(max(0.0, cut + SCALED_OUTAGE - time.monotonic()))  # the outage itself
        endpoint.point_to(jobs_cluster.primary)
        roomy_results = [result for _, result in roomy_sent]
        tight_results = [result for _, result in tight_sent]
        wait_done(roomy_results, roomy, 60)
        wait_done(tight_results, tight, 60)

        # Budget 30 s: every job took effect once, none failed, none parked.
        states = Counter(result.state for result in roomy_results)
        assert states == Counter({"SUCCESS": len(roomy_sent)}), f"{states}\n{roomy.tail()}"
        # Budget 10 s: every job failed with its own exception, and is parked, not lost.
        states = Counter(result.state for result in tight_results)
        assert states == Counter({"FAILURE": len(tight_sent)}), f"{states}\n{tight.tail()}"
        assert all(isinstance(result.result, OutageBudgetExceeded) for result in tight_results)
        parked = ParkedJob.objects.using(JOBS_ALIAS)
        assert sorted(parked.values_list("task_id", flat=True)) == sorted(
            result.id for result in tight_results
        )
        assert Counter(job.args[0] for job in parked) == Counter(o for o, _ in tight_sent)
        assert all(job.queue == "tight" and "Database" in job.last_error for job in parked)
        counts = rows_by_order(jobs_cluster.primary)
        assert counts == Counter(roomy_orders), lost_and_duplicated(roomy_orders, counts)

        # One parked order takes effect some other way first: its replay must be a no-op.
        assert place_order.apply_async((tight_orders[0],), queue="tight").get(timeout=30)
        outcome = parking.replay(list(parked), using=JOBS_ALIAS, app=app)
        assert not outcome.errors and len(outcome.sent) == len(tight_sent)
        replays = [AsyncResult(task_id, app=app) for task_id in outcome.sent.values()]
        wait_done(replays, tight, 60)
    assert Counter(result.state for result in replays) == Counter({"SUCCESS": len(tight_sent)})
    orders = roomy_orders + tight_orders
    counts = rows_by_order(jobs_cluster.primary)
    assert counts == Counter(orders), lost_and_duplicated(orders, counts)
    assert not parked.filter(replayed_at=None).exists()
