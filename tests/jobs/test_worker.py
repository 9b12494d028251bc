"""A real ``celery worker`` (prefork, Redis broker) running idempotent tasks on a real cluster."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from celery.result import AsyncResult

from django_pg_resilience.contrib.celery.models import JobRecord
from django_pg_resilience.testing import LocalCluster
from tests.jobs.conftest import StartWorker, wait_ready
from tests.jobs.jobs import JOBS_ALIAS, place_order
from tests.testapp.models import ChaosOrder

pytestmark = pytest.mark.slow


def order_rows() -> Counter[int]:
    return Counter(ChaosOrder.objects.using(JOBS_ALIAS).values_list("shop_order_id", flat=True))


def wait_all(results: list[AsyncResult], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(result.ready() for result in results):
        assert time.monotonic() < deadline, "tasks still running at the deadline"
        time.sleep(0.1)


def test_duplicate_sends_take_effect_once_and_return_the_same_outcome(
    start_worker: StartWorker,
) -> None:
    with start_worker() as worker:
        wait_ready(worker)
        firsts = [place_order.delay(order_id) for order_id in range(20)]
        # Each order sent again at the same instant: two pool processes race on the key.
        seconds = [place_order.delay(order_id) for order_id in range(20)]
        wait_all(firsts + seconds, 60)
    assert [r.state for r in firsts + seconds] == ["SUCCESS"] * 40, worker.tail()
    assert order_rows() == Counter(range(20))
    for first, second in zip(firsts, seconds, strict=True):
        assert first.result == second.result
    assert JobRecord.objects.using(JOBS_ALIAS).count() == 20


def test_a_task_that_meets_an_outage_is_retried_by_celery_not_failed(
    start_worker: StartWorker, jobs_cluster: LocalCluster
) -> None:
    endpoint = jobs_cluster.endpoint
    with start_worker() as worker:
        wait_ready(worker)
        endpoint.point_to(None)  # the endpoint refuses every connection
        result = place_order.delay(1000)
        deadline = time.monotonic() + 60
        while result.state != "RETRY":
            assert time.monotonic() < deadline, f"no retry: {result.state}\n{worker.tail()}"
            time.sleep(0.1)
        endpoint.point_to(jobs_cluster.primary)
        assert result.get(timeout=60)["order"] == 1000
    assert result.state == "SUCCESS"
    assert order_rows() == Counter([1000])
