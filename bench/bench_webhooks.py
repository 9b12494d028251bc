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

Phases alternate in rounds on the same server so that noise hits them alike.
Prints deliveries/s, p50/p99 latency, the shopify/plain ratio (target >= 0.9)
and the latency durable_ack adds; also the server time per delivery one at a
time through the test client (no HTTP), which shows the raw added cost of the
dedup transaction. Writes ``bench/results/webhooks.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import threading
import time
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
TARGET_RATIO = 0.9


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


def _views() -> tuple[Any, Any]:
    from django_pg_resilience.webhooks import ShopifyWebhookView

    class Orders(ShopifyWebhookView):
        secrets = [SECRET]

        def handle(self, event: Any) -> None:
            insert_order(event.payload["id"])

    class DurableOrders(Orders):
        durable_ack = True

    return Orders, DurableOrders


urlpatterns: list[Any] = []


def install_urls() -> None:
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    orders, durable = _views()
    urlpatterns.extend(
        [
            path("plain", csrf_exempt(plain_view)),
            path("plain-atomic", csrf_exempt(plain_atomic_view)),
            path("shopify", orders.as_view()),
            path("durable", durable.as_view()),
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
        with urllib.request.urlopen(delivery.urllib_request(url), timeout=30) as response:  # noqa: S310
            response.read()
            return response.status, time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(send, deliveries))
    elapsed = time.perf_counter() - started
    if any(status != 200 for status, _ in results):
        raise RuntimeError(f"{url}: non-200 answers")
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


def in_process_cost(requests: int) -> dict[str, float]:
    """Mean server time per delivery, one at a time through Django's test client (no HTTP)."""
    from django.test import Client

    from django_pg_resilience.testing.webhooks import shopify_request

    client = Client()
    costs: dict[str, float] = {}
    first_id = 10_000_000
    for name in ("plain", "plain-atomic", "shopify") * 2:
        deliveries = [shopify_request({"id": first_id + n}, SECRET) for n in range(requests)]
        first_id += requests
        started = time.perf_counter()
        for delivery in deliveries:
            if client.post(f"/{name}", **delivery.client_kwargs()).status_code != 200:
                raise RuntimeError(f"/{name}: non-200 answer")
        costs[name] = round(1000 * (time.perf_counter() - started) / requests, 3)  # 2nd run wins
    return costs


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(itertools.chain.from_iterable(r["latencies"] for r in runs))
    elapsed = sum(r["elapsed"] for r in runs)

    def pct(p: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)

    return {
        "deliveries": len(latencies),
        "per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(1000 * latencies[-1], 2),
        "mean_ms": round(1000 * statistics.fmean(latencies), 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer deliveries (a smoke run)")
    parser.add_argument("--requests", type=int, default=None, help="deliveries per phase and round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    requests = args.requests or (60 if args.quick else 300)
    rounds = args.rounds or (2 if args.quick else 4)

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
            load.run(f"{url}/shopify", 40, args.concurrency)  # warm up pool and imports
            load.run(f"{url}/plain", 40, args.concurrency)
            phases: dict[str, list[dict[str, Any]]] = {"plain": [], "shopify": [], "durable": []}
            for _ in range(rounds):
                for name in phases:
                    phases[name].append(load.run(f"{url}/{name}", requests, args.concurrency))
            serial = in_process_cost(requests)
        finally:
            load.close()
            stop()
            from django.db import connections

            connections.close_all()

    summary = {name: summarise(runs) for name, runs in phases.items()}
    # Each round runs the phases back to back, so a round's ratio compares runs
    # under the same background load; the median of rounds resists a noisy one.
    round_ratios = [
        round((p["elapsed"] / s["elapsed"]), 3)
        for p, s in zip(phases["plain"], phases["shopify"], strict=True)
    ]
    ratio = statistics.median(round_ratios)
    result: dict[str, Any] = {
        "benchmark": "webhooks",
        "concurrency": args.concurrency,
        "deliveries_per_phase": requests * rounds,
        "phases": summary,
        "shopify_vs_plain_ratio": ratio,
        "shopify_vs_plain_ratio_per_round": round_ratios,
        "shopify_vs_plain_ratio_overall": round(
            summary["shopify"]["per_second"] / summary["plain"]["per_second"], 3
        ),
        "load_average_1m": round(_load_average(), 2),
        "target_ratio": TARGET_RATIO,
        "ratio_met": ratio >= TARGET_RATIO,
        "serial_server_ms_per_delivery": serial,
        "serial_added_ms": round(serial["shopify"] - serial["plain"], 3),
        "durable_ack_added_p50_ms": round(
            summary["durable"]["p50_ms"] - summary["shopify"]["p50_ms"], 2
        ),
        "durable_ack_added_p99_ms": round(
            summary["durable"]["p99_ms"] - summary["shopify"]["p99_ms"], 2
        ),
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
    print(f"{'phase':<10}{'deliveries/s':>14}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, row in result["phases"].items():
        print(
            f"{name:<10}{row['per_second']:>14}{row['p50_ms']:>10}{row['p99_ms']:>10}"
            f"{row['max_ms']:>10}"
        )
    mark = "met" if result["ratio_met"] else "NOT met"
    print(
        f"shopify / plain throughput: {result['shopify_vs_plain_ratio']} median of rounds "
        f"{result['shopify_vs_plain_ratio_per_round']} (target >= {TARGET_RATIO}: {mark}; "
        f"load average {result['load_average_1m']} on {result['machine']['cpus']} CPUs)"
    )
    serial = result["serial_server_ms_per_delivery"]
    print(
        f"one at a time, no HTTP: plain {serial['plain']} ms, plain in a transaction "
        f"{serial['plain-atomic']} ms, shopify {serial['shopify']} ms per delivery "
        f"(+{result['serial_added_ms']} ms over plain)"
    )
    print(
        f"durable_ack adds p50 {result['durable_ack_added_p50_ms']} ms, "
        f"p99 {result['durable_ack_added_p99_ms']} ms (streaming standby)"
    )


if __name__ == "__main__":
    main()
