#!/usr/bin/env python3
"""Webhook throughput and latency: ``python3 bench/bench_webhooks.py [--quick]``.

A real primary + streaming standby (LocalCluster), Django served by a threaded
WSGI server in this process on 127.0.0.1, and client threads posting over HTTP
from a separate load process (so they do not compete for the server's GIL):

* ``plain``: a view that only does the insert (``INSERT INTO bench_order``);
* ``shopify``: ``ShopifyWebhookView`` doing the same insert in ``handle()``:
  signature check, dedup row, one transaction;
* ``durable``: the same with ``durable_ack = True`` (waits for the streaming
  standby to flush the commit).

* ``plain-atomic``: the plain insert inside ``transaction.atomic()``, for
  reading the figures (BEGIN and COMMIT are two round trips any exactly-once
  view pays).
* ``shopify-async``: ``ShopifyWebhookView`` with ``process_async = True``:
  signature check and the pending event row only (the insert is left to
  ``manage.py process_webhooks``, not run here).

Phases alternate in rounds on the same server, in a rotating order, so that
noise hits them alike; ratios are medians of per-round ratios. Prints
deliveries/s, p50/p99 latency (nearest rank), the targets (the inline Shopify
view >= 0.75 of plain-atomic, the plain view wrapped in ``transaction.atomic()``
that a careful developer writes; ``process_async`` >= 0.8 of plain), the
durable_ack wait timed in the view, and latencies one delivery at
a time over HTTP; also the server time and CPU per delivery one at a time
through the test client (no HTTP), which shows the raw added cost of the dedup
transaction. Writes ``bench/results/webhooks.json``.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import math
import platform
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "webhooks.json"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECRET = "bench-shopify-secret"
#: The inline Shopify view against the plain view in transaction.atomic(): no
#: exactly-once view can beat a transaction, so that is the baseline.
TARGET_INLINE_VS_ATOMIC = 0.75
#: process_async (signature check and the pending row) against the plain view.
TARGET_ASYNC_VS_PLAIN = 0.8
#: The phases measured under concurrent load, in the order of the first round
#: (later rounds rotate it). plain-atomic is for reading the figures: it is the
#: plain insert in a transaction, the floor of any exactly-once view.
PHASES = ("plain", "plain-atomic", "shopify", "durable", "shopify-async")

#: Seconds each durable_ack confirmation took, appended by the server's view.
DURABLE_WAITS: list[float] = []


# --- the Django side ---------------------------------------------------------------


def configure_django(primary: Any) -> None:
    import django
    from django.conf import settings

    from django_pg_resilience.testing.django import database_settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django_pg_resilience"],
        MIDDLEWARE=[],
        USE_TZ=True,
        DATABASES={
            # A pool, as a threaded production server would use (a new
            # connection per request would dwarf everything measured here).
            "default": database_settings(
                primary, OPTIONS={"connect_timeout": 2, "pool": {"min_size": 8, "max_size": 16}}
            )
        },
        LOGGING_CONFIG=None,
    )
    django.setup()


def insert_order(order_id: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_order (shopify_order_id) VALUES (%s)", [order_id])


def plain_view(request: Any) -> Any:
    from django.http import JsonResponse

    payload = json.loads(request.body)
    insert_order(payload["id"])
    return JsonResponse({"status": "processed"})


def plain_atomic_view(request: Any) -> Any:
    """The plain insert inside a transaction: what BEGIN and COMMIT alone cost."""
    from django.db import transaction
    from django.http import JsonResponse

    payload = json.loads(request.body)
    with transaction.atomic():
        insert_order(payload["id"])
    return JsonResponse({"status": "processed"})


def _views() -> tuple[Any, Any, Any]:
    from django_pg_resilience.webhooks import ShopifyWebhookView

    class Orders(ShopifyWebhookView):
        secrets = [SECRET]

        def handle(self, event: Any) -> None:
            insert_order(event.payload["id"])

    class DurableOrders(Orders):
        durable_ack = True

        def confirm_durable(self, delivery: Any, using: str, committed_on: Any) -> bool:
            # Timed here, in the server: the wait itself, free of the queueing
            # that end-to-end latencies under concurrency also contain.
            started = time.perf_counter()
            try:
                return super().confirm_durable(delivery, using, committed_on)
            finally:
                DURABLE_WAITS.append(time.perf_counter() - started)

    class QueuedOrders(Orders):
        process_async = True

    return Orders, DurableOrders, QueuedOrders


urlpatterns: list[Any] = []


def install_urls() -> None:
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    orders, durable, queued = _views()
    urlpatterns.extend(
        [
            path("plain", csrf_exempt(plain_view)),
            path("plain-atomic", csrf_exempt(plain_atomic_view)),
            path("shopify", orders.as_view()),
            path("durable", durable.as_view()),
            path("shopify-async", queued.as_view()),
        ]
    )


# --- load --------------------------------------------------------------------------


def serve() -> tuple[str, Callable[[], None]]:
    import socketserver
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

    from django.core.handlers.wsgi import WSGIHandler

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True
        request_queue_size = 256

    server = Server(("127.0.0.1", 0), Quiet)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(10)

    return f"http://127.0.0.1:{server.server_address[1]}", stop


def run_phase(url: str, first_id: int, requests: int, concurrency: int) -> dict[str, Any]:
    """Send ``requests`` signed deliveries with ``concurrency`` threads (in the load process)."""
    from django_pg_resilience.testing.webhooks import shopify_request

    deliveries = [shopify_request({"id": first_id + n}, SECRET) for n in range(requests)]

    def send(delivery: Any) -> tuple[int, float]:
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(delivery.urllib_request(url), timeout=30) as response:  # noqa: S310
                response.read()
                return response.status, time.perf_counter() - started
        except urllib.error.HTTPError as error:  # a 503 is an answer: counted, not raised
            return error.code, time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(send, deliveries))
    elapsed = time.perf_counter() - started
    statuses = collections.Counter(status for status, _ in results)
    if set(statuses) != {200}:
        raise RuntimeError(f"{url}: answers other than 200: {dict(statuses)}")
    return {"elapsed": elapsed, "latencies": [latency for _, latency in results]}


class LoadProcess:
    """The client threads run in another process: they must not share the server's GIL."""

    def __init__(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self.next_id = 1

    def run(self, url: str, requests: int, concurrency: int) -> dict[str, Any]:
        first, self.next_id = self.next_id, self.next_id + requests
        return self.pool.submit(run_phase, url, first, requests, concurrency).result()

    def close(self) -> None:
        self.pool.shutdown()


def in_process_cost(requests: int, rounds: int) -> dict[str, dict[str, float]]:
    """Server time per delivery, one at a time through Django's test client (no HTTP).

    The views run in interleaved rounds (the order alternates) and each figure
    is the median over rounds: ``wall_ms`` includes the database round trips,
    ``cpu_ms`` is this thread's CPU time only (what holds the GIL, hence what
    bounds a threaded server's throughput).
    """
    from django.test import Client

    from django_pg_resilience.testing.webhooks import shopify_request

    client = Client()
    names = ("plain", "plain-atomic", "shopify")
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    first_id = 10_000_000
    for round_number in range(rounds + 1):  # round 0 warms up and is not counted
        order = names if round_number % 2 else names[::-1]
        for name in order:
            deliveries = [
                shopify_request({"id": first_id + n}, SECRET).client_kwargs()
                for n in range(requests)
            ]
            first_id += requests
            started, started_cpu = time.perf_counter(), time.thread_time()
            for delivery in deliveries:
                if client.post(f"/{name}", **delivery).status_code != 200:
                    raise RuntimeError(f"/{name}: non-200 answer")
            if round_number:
                wall[name].append(1000 * (time.perf_counter() - started) / requests)
                cpu[name].append(1000 * (time.thread_time() - started_cpu) / requests)
    return {
        name: {
            "wall_ms": round(statistics.median(wall[name]), 3),
            "cpu_ms": round(statistics.median(cpu[name]), 3),
        }
        for name in names
    }


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (p in 0..1)."""
    rank = max(1, math.ceil(p * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(1000 * percentile(ordered, 0.50), 2),
        "p99_ms": round(1000 * percentile(ordered, 0.99), 2),
        "max_ms": round(1000 * ordered[-1], 2),
        "mean_ms": round(1000 * statistics.fmean(ordered), 2),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = list(itertools.chain.from_iterable(r["latencies"] for r in runs))
    elapsed = sum(r["elapsed"] for r in runs)
    return {
        "deliveries": len(latencies),
        "per_second": round(len(latencies) / elapsed, 1),
        **latency_summary(latencies),
    }


def serial_latency(load: LoadProcess, url: str, requests: int, rounds: int) -> dict[str, Any]:
    """End-to-end latency of shopify and durable one delivery at a time (no queueing)."""
    runs: dict[str, list[float]] = {"shopify": [], "durable": []}
    for round_number in range(rounds):
        order = ("shopify", "durable") if round_number % 2 == 0 else ("durable", "shopify")
        for name in order:
            runs[name].extend(load.run(f"{url}/{name}", requests, 1)["latencies"])
    result: dict[str, Any] = {name: latency_summary(latencies) for name, latencies in runs.items()}
    result["added_p50_ms"] = round(result["durable"]["p50_ms"] - result["shopify"]["p50_ms"], 2)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer deliveries (a smoke run)")
    parser.add_argument("--requests", type=int, default=None, help="deliveries per phase and round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    requests = args.requests or (60 if args.quick else 300)
    rounds = args.rounds or (2 if args.quick else 8)

    from django_pg_resilience.testing import LocalCluster

    with LocalCluster(standbys=1) as cluster:
        configure_django(cluster.primary)
        install_urls()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        cluster.primary.query(
            "CREATE TABLE bench_order (id bigserial PRIMARY KEY, shopify_order_id bigint UNIQUE)"
        )
        url, stop = serve()
        load = LoadProcess()
        try:
            for name in PHASES:  # warm up the pool, imports and caches of every view
                load.run(f"{url}/{name}", 40, args.concurrency)
            DURABLE_WAITS.clear()
            phases: dict[str, list[dict[str, Any]]] = {name: [] for name in PHASES}
            for round_number in range(rounds):
                # Rotate the order so that no phase always follows the same one
                # (the durable phase leaves the standby busy, for instance).
                shift = round_number % len(PHASES)
                for name in PHASES[shift:] + PHASES[:shift]:
                    phases[name].append(load.run(f"{url}/{name}", requests, args.concurrency))
            durable_waits = list(DURABLE_WAITS)
            serial_http = serial_latency(load, url, max(20, requests // 6), max(2, rounds // 2))
            serial = in_process_cost(max(50, requests // 3), max(3, rounds))
        finally:
            load.close()
            stop()
            from django.db import connections

            connections.close_all()

    summary = {name: summarise(runs) for name, runs in phases.items()}
    durable_wait = {"waits": len(durable_waits), **latency_summary(durable_waits)}

    def ratio_per_round(slow: str, fast: str) -> list[float]:
        # shopify/plain deliveries per second in one round = plain's elapsed
        # time over shopify's for the same number of deliveries.
        return [
            round(f["elapsed"] / s["elapsed"], 3)
            for f, s in zip(phases[fast], phases[slow], strict=True)
        ]

    # Runs of one round are back to back, so a round's ratio compares runs under
    # the same background load; the median of rounds resists a noisy one.
    round_ratios = ratio_per_round("shopify", "plain")
    ratio = round(statistics.median(round_ratios), 3)
    atomic_ratios = ratio_per_round("shopify", "plain-atomic")
    inline_ratio = round(statistics.median(atomic_ratios), 3)
    async_ratio = round(statistics.median(ratio_per_round("shopify-async", "plain")), 3)
    result: dict[str, Any] = {
        "benchmark": "webhooks",
        "concurrency": args.concurrency,
        "rounds": rounds,
        "deliveries_per_phase": requests * rounds,
        "phases": summary,
        "shopify_vs_plain_ratio": ratio,
        "shopify_vs_plain_ratio_per_round": round_ratios,
        "shopify_vs_plain_ratio_overall": round(
            summary["shopify"]["per_second"] / summary["plain"]["per_second"], 3
        ),
        "shopify_vs_plain_atomic_ratio": inline_ratio,
        "shopify_vs_plain_atomic_ratio_per_round": atomic_ratios,
        "shopify_async_vs_plain_ratio": async_ratio,
        "plain_atomic_vs_plain_ratio": round(
            statistics.median(ratio_per_round("plain-atomic", "plain")), 3
        ),
        "load_average_1m": round(_load_average(), 2),
        "target_inline_vs_atomic": TARGET_INLINE_VS_ATOMIC,
        "target_async_vs_plain": TARGET_ASYNC_VS_PLAIN,
        "inline_target_met": inline_ratio >= TARGET_INLINE_VS_ATOMIC,
        "async_target_met": async_ratio >= TARGET_ASYNC_VS_PLAIN,
        "serial_server_per_delivery": serial,
        "serial_added_wall_ms": round(serial["shopify"]["wall_ms"] - serial["plain"]["wall_ms"], 3),
        "serial_added_cpu_ms": round(serial["shopify"]["cpu_ms"] - serial["plain"]["cpu_ms"], 3),
        # The wait itself, timed in the view under the concurrent durable phase:
        # one distribution, so its p99 is never below its p50 (differences of
        # two phases' percentiles are not percentiles of the difference).
        "durable_ack_wait": durable_wait,
        # What durable_ack adds to a delivery: the p50 and p99 of that wait
        # (the keys bench/run.py shows as "durable ack adds p50 / p99").
        "durable_ack_added_p50_ms": durable_wait["p50_ms"],
        "durable_ack_added_p99_ms": durable_wait["p99_ms"],
        "serial_http_latency": serial_http,
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "quick": args.quick,
    }
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {RESULTS.relative_to(ROOT)}")
    return result


def _load_average() -> float:
    import os

    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def print_table(result: dict[str, Any]) -> None:
    print(f"{'phase':<14}{'deliveries/s':>14}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, row in result["phases"].items():
        print(
            f"{name:<14}{row['per_second']:>14}{row['p50_ms']:>10}{row['p99_ms']:>10}"
            f"{row['max_ms']:>10}"
        )

    def mark(met: bool) -> str:
        return "met" if met else "NOT met"

    print(
        f"shopify / plain-atomic throughput: {result['shopify_vs_plain_atomic_ratio']} median "
        f"of rounds {result['shopify_vs_plain_atomic_ratio_per_round']} (target >= "
        f"{TARGET_INLINE_VS_ATOMIC}: {mark(result['inline_target_met'])}; load average "
        f"{result['load_average_1m']} on {result['machine']['cpus']} CPUs)"
    )
    print(
        f"shopify-async / plain: {result['shopify_async_vs_plain_ratio']} (target >= "
        f"{TARGET_ASYNC_VS_PLAIN}: {mark(result['async_target_met'])}); shopify / plain: "
        f"{result['shopify_vs_plain_ratio']}; plain-atomic / plain: "
        f"{result['plain_atomic_vs_plain_ratio']} (medians of rounds)"
    )
    serial = result["serial_server_per_delivery"]
    print(
        "one at a time, no HTTP (wall / this thread's CPU, ms per delivery): "
        + ", ".join(f"{name} {row['wall_ms']} / {row['cpu_ms']}" for name, row in serial.items())
        + f" (shopify adds {result['serial_added_wall_ms']} / {result['serial_added_cpu_ms']})"
    )
    wait = result["durable_ack_wait"]
    print(
        f"durable_ack wait in the view (concurrent phase, {wait['waits']} waits): "
        f"p50 {wait['p50_ms']} ms, p99 {wait['p99_ms']} ms, max {wait['max_ms']} ms"
    )
    serial_http = result["serial_http_latency"]
    print(
        f"one at a time over HTTP: shopify p50 {serial_http['shopify']['p50_ms']} ms "
        f"p99 {serial_http['shopify']['p99_ms']} ms, durable p50 "
        f"{serial_http['durable']['p50_ms']} ms p99 {serial_http['durable']['p99_ms']} ms "
        f"(durable_ack adds {serial_http['added_p50_ms']} ms at the median)"
    )


if __name__ == "__main__":
    main()
