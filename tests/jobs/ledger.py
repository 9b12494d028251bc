"""What the Celery chaos tests count: order rows per order id, read from a node itself."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

from celery.result import AsyncResult

from django_pg_resilience.testing import Node
from django_pg_resilience.testing.jobs import CeleryWorker
from tests.testapp.models import ChaosOrder


def rows_by_order(node: Node) -> Counter[int]:
    table = ChaosOrder._meta.db_table
    rows = node.query(f"SELECT shop_order_id, count(*) FROM {table} GROUP BY 1")
    return Counter({int(order): int(count) for order, count in rows})


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def wait_rows(node: Node, at_least: int, timeout: float) -> None:
    wait_until(lambda: sum(rows_by_order(node).values()) >= at_least, timeout, f"{at_least} orders")


def wait_logged(worker: CeleryWorker, text: str, timeout: float) -> None:
    wait_until(lambda: text in worker.tail(100_000), timeout, f"{text!r} logged\n{worker.tail()}")


def wait_done(results: Iterable[AsyncResult], worker: CeleryWorker, timeout: float) -> None:
    pending = list(results)
    wait_until(
        lambda: all(result.ready() for result in pending),
        timeout,
        f"every job finished\n{worker.tail()}",
    )


def lost_and_duplicated(expected: Iterable[int], counts: Counter[int]) -> str:
    expected = set(expected)
    lost = sorted(expected - set(counts))[:10]
    duplicated = sorted(order for order, n in counts.items() if n > 1)[:10]
    return f"lost: {lost}, duplicated: {duplicated}"
