#!/usr/bin/env python3
"""Per-task cost of the idempotency record: ``python3 bench/bench_celery.py [--quick]``.

``python3 bench/bench_celery.py outage [--seconds 75 300] [--webhook-seconds 600]``
measures jobs and the webhook worker through long outages instead (about 20 minutes:
see ``bench_celery_outage.py``).

A real primary + streaming standby (LocalCluster). Each task inserts one order
row; the tasks run through Celery's own tracer (``task.apply()``, the code a
worker process runs for a message, without the broker):

* ``plain``: ``@app.task`` doing the insert (autocommit, one statement);
* ``plain-atomic``: ``@app.task`` doing it in ``atomic_with_retry`` (what any
  retry-safe task pays: BEGIN and COMMIT);
* ``idempotent``: ``@idempotent_task`` doing it (the key record inserted in the
  same transaction, the outcome stored);
* ``replay``: ``@idempotent_task`` called again with a committed key (the
  no-op a redelivered task costs).

Rounds alternate the order of the variants; figures are medians and nearest-
rank p99 over every call. The overhead is ``idempotent`` minus ``plain`` at p50
(target <= 1 ms) and minus ``plain-atomic``. Writes ``bench/results/celery.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "celery.json"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_OVERHEAD_MS = 1.0
VARIANTS = ("plain", "plain-atomic", "idempotent", "replay")


def configure_django(primary: Any) -> None:
    import django
    from django.conf import settings

    from django_pg_resilience.testing.django import database_settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only-not-secret",
        INSTALLED_APPS=["django_pg_resilience", "django_pg_resilience.contrib.celery"],
        USE_TZ=True,
        # A persistent connection, as a worker process keeps one.
        DATABASES={"default": database_settings(primary, CONN_MAX_AGE=None)},
        LOGGING_CONFIG=None,
    )
    django.setup()


def insert_order(order_id: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_order (order_id) VALUES (%s) RETURNING id", [order_id])
        return int(cursor.fetchone()[0])


def make_tasks() -> dict[str, Callable[[int], Any]]:
    from celery import Celery

    from django_pg_resilience.contrib.celery import idempotent_task
    from django_pg_resilience.retry import atomic_with_retry

    app = Celery("bench", set_as_current=True)
    app.conf.update(task_store_eager_result=False, broker_url="memory://")

    @app.task(name="bench.plain")
    def plain(order_id: int) -> int:
        return insert_order(order_id)

    @app.task(name="bench.plain_atomic")
    def plain_atomic(order_id: int) -> int:
        return atomic_with_retry(insert_order)(order_id)

    @idempotent_task(key=lambda order_id: ("bench-order", order_id), app=app)
    def idempotent(order_id: int) -> int:
        return insert_order(order_id)

    def run(task: Any) -> Callable[[int], Any]:
        def call(order_id: int) -> Any:
            result = task.apply(args=(order_id,))
            if result.failed():
                raise RuntimeError(f"{task.name} failed: {result.result!r}")
            return result.result

        return call

    return {
        "plain": run(plain),
        "plain-atomic": run(plain_atomic),
        "idempotent": run(idempotent),
        # The ids of the idempotent variant's earlier calls: every key committed.
        "replay": run(idempotent),
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summarize(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(statistics.median(ms), 4),
        "p99_ms": round(percentile(ms, 0.99), 4),
        "mean_ms": round(statistics.fmean(ms), 4),
    }


def measure(rounds: int, per_round: int, warm_up: int) -> dict[str, Any]:
    tasks = make_tasks()
    timings: dict[str, list[float]] = {name: [] for name in VARIANTS}
    ids = itertools.count(1)
    committed: list[int] = []
    for name in VARIANTS[:3]:  # connection, statement caches, Celery's tracer
        for _ in range(warm_up):
            order_id = next(ids)
            tasks[name](order_id)
            committed.append(order_id)
    for round_number in range(rounds):
        shift = round_number % len(VARIANTS)
        for name in VARIANTS[shift:] + VARIANTS[:shift]:
            call = tasks[name]
            for n in range(per_round):
                order_id = committed[n % len(committed)] if name == "replay" else next(ids)
                started = time.perf_counter()
                call(order_id)
                timings[name].append(time.perf_counter() - started)
                if name == "idempotent":
                    committed.append(order_id)
    figures: dict[str, Any] = {name: summarize(timings[name]) for name in VARIANTS}
    plain, atomic, once = (figures[n]["p50_ms"] for n in ("plain", "plain-atomic", "idempotent"))
    figures["overhead_vs_plain_p50_ms"] = round(once - plain, 4)
    figures["overhead_vs_plain_atomic_p50_ms"] = round(once - atomic, 4)
    figures["calls_per_variant"] = rounds * per_round
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    if argv and argv[0] == "outage":
        from bench_celery_outage import main as outage_main

        return outage_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args(argv)
    rounds, per_round = (4, 100) if args.quick else (10, 200)

    from django_pg_resilience.testing import LocalCluster

    with LocalCluster(standbys=1) as cluster:
        configure_django(cluster.primary)
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE bench_order (id bigserial PRIMARY KEY, order_id bigint)")
        figures = measure(rounds, per_round, warm_up=50)
        connection.close()

    results = {
        **figures,
        "target_overhead_ms": TARGET_OVERHEAD_MS,
        "meets_target": figures["overhead_vs_plain_p50_ms"] <= TARGET_OVERHEAD_MS,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Celery task cost, {figures['calls_per_variant']} calls each (task.apply, no broker)")
    for name in VARIANTS:
        r = figures[name]
        print(f"  {name:<14} p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms")
    print(
        f"  idempotency record adds {figures['overhead_vs_plain_p50_ms']:.3f} ms at p50 over "
        f"plain ({figures['overhead_vs_plain_atomic_p50_ms']:.3f} ms over plain-atomic); "
        f"target <= {TARGET_OVERHEAD_MS:g} ms: {'met' if results['meets_target'] else 'MISSED'}"
    )
    print(f"  saved {RESULTS.relative_to(ROOT)}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
