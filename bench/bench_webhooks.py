#!/usr/bin/env python3
"""Webhook ingest against plain writes: ``python3 bench/bench_webhooks.py [--quick]``.

A real primary + streaming standby (LocalCluster), Django served by gunicorn
(``gthread``, 2 workers x 4 threads, each worker with its own pool), load from
a separate process over raw sockets (one connection per delivery), side by side
in one run:

* ``plain``: a view that parses the body and inserts the order (one autocommit
  statement);
* ``plain-atomic``: the same insert inside ``transaction.atomic()`` (BEGIN and
  COMMIT are two round trips any exactly-once view pays): the inline baseline;
* ``inline``: ``ShopifyWebhookView`` doing the same insert in ``handle()``:
  signature, dedup row and handler in one transaction;
* ``async``: the same view with ``process_async = True`` (signature and the
  pending event row; ``handle()`` is left to the worker, not run here);
* ``durable`` (first cell only): ``inline`` with ``durable_ack = True``.

Cells: bodies of 1 KiB, 16 KiB and 256 KiB (a Shopify order's JSON, its line
items repeated to size), 1 and 8 concurrent senders, straight to PostgreSQL and
through PgBouncer in transaction mode. Phases run back to back in rounds, in a
rotating order; a ratio is the median of the per-round ratios (the phases of a
round share the machine's background load). Also measured:

* round trips per delivery, counted by the server (pg_stat_statements: every
  statement the app sends is one round trip, BEGIN and COMMIT included), for
  a new delivery and for a duplicate;
* CPU per delivery under load, of the gunicorn workers and of PostgreSQL
  (``/proc``), to see where the time goes;
* the profile of one delivery in this process (no HTTP), step by step, and a
  CPU profile (cProfile) of the inline view.

Targets (benchmark figures, not tests): inline >= 0.8 of plain-atomic and
async >= 0.85 of plain, at 1 KiB and 8 senders. Writes
``bench/results/webhooks.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import math
import os
import platform
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "webhooks.json"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECRET = "bench-shopify-secret"
TARGET_INLINE_VS_ATOMIC = 0.8
TARGET_ASYNC_VS_PLAIN = 0.85
PHASES = ("plain", "plain-atomic", "inline", "async")
SIZES = {"1KiB": 1024, "16KiB": 16 * 1024, "256KiB": 256 * 1024}
SENDERS = (8, 1)
#: Deliveries per phase and round, by body size (fewer of the large ones).
REQUESTS = {"1KiB": 300, "16KiB": 200, "256KiB": 40}
WORKERS, THREADS = 2, 4
#: The environment variable that hands the database to the gunicorn workers.
ENV = "BENCH_WEBHOOKS_DATABASE"


# --- the Django side (this process for setup and the profile; gunicorn's workers) ---------


def configure_django(database: dict[str, Any]) -> None:
    import django
    from django.conf import settings

    from django_pg_resilience.testing.django import database_settings

    class Address:
        host, port = database["host"], database["port"]

    options: dict[str, Any] = {
        "connect_timeout": 2,
        # A pool, as a threaded production server uses: one connection per thread.
        "pool": {"min_size": THREADS, "max_size": THREADS},
        # psycopg prepares a statement bound on the server after 5 runs; behind
        # PgBouncer in transaction mode it must not (None, Django's default).
        "prepare_threshold": database["prepare_threshold"],
    }
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django_pg_resilience"],
        MIDDLEWARE=[],
        USE_TZ=True,
        DATABASES={"default": database_settings(Address, OPTIONS=options)},
        LOGGING_CONFIG=None,
        PG_RESILIENCE={"WEBHOOK_DURABLE_ACK_TIMEOUT": 5.0},
    )
    django.setup()
    install_urls()


def wsgi_app() -> Any:
    """gunicorn's application factory (``bench_webhooks:wsgi_app()``)."""
    from django.core.handlers.wsgi import WSGIHandler

    configure_django(json.loads(os.environ[ENV]))
    return WSGIHandler()


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
    from django.db import transaction
    from django.http import JsonResponse

    payload = json.loads(request.body)
    with transaction.atomic():
        insert_order(payload["id"])
    return JsonResponse({"status": "processed"})


def _views() -> dict[str, Any]:
    from django_pg_resilience.webhooks import ShopifyWebhookView

    class Orders(ShopifyWebhookView):
        secrets = [SECRET]

        def handle(self, event: Any) -> None:
            insert_order(event.payload["id"])

    class DurableOrders(Orders):
        durable_ack = True

    class QueuedOrders(Orders):
        process_async = True

    return {"inline": Orders, "durable": DurableOrders, "async": QueuedOrders}


urlpatterns: list[Any] = []


def install_urls() -> None:
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    views = _views()
    urlpatterns.extend(
        [
            path("plain", csrf_exempt(plain_view)),
            path("plain-atomic", csrf_exempt(plain_atomic_view)),
            *(path(name, view.as_view()) for name, view in views.items()),
        ]
    )


# --- bodies and load ---------------------------------------------------------------


def order(order_id: int, size: int) -> dict[str, Any]:
    """A Shopify-like order whose JSON is about ``size`` bytes."""
    items: list[dict[str, Any]] = []
    body = {"id": order_id, "email": "buyer@example.com", "currency": "EUR", "line_items": items}
    line = {"title": "Widget", "price": "19.99", "quantity": 1, "vendor": "Acme", "taxable": True}
    item_size = len(json.dumps({"id": 1, "sku": "SKU-000000", **line})) + 2
    for n in range(max(0, (size - len(json.dumps(body))) // item_size)):
        items.append({"id": n + 1, "sku": f"SKU-{n:06d}", **line})
    return body


def http_requests(path: str, first_id: int, count: int, size: int, port: int) -> list[bytes]:
    """``count`` signed deliveries as the bytes a sender puts on the wire."""
    from django_pg_resilience.testing.webhooks import shopify_request

    raw = []
    for n in range(count):
        delivery = shopify_request(order(first_id + n, size), SECRET)
        headers = {
            **delivery.headers,
            "Host": f"127.0.0.1:{port}",
            "Content-Type": "application/json",
            "Content-Length": str(len(delivery.body)),
            "Connection": "close",
        }
        head = f"POST /{path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        raw.append(head.encode() + b"\r\n" + delivery.body)
    return raw


def _send(port: int, request: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), time.perf_counter() - started


def run_phase(port: int, requests: list[bytes], senders: int) -> dict[str, Any]:
    """Send ``requests`` with ``senders`` threads (in the load process); all must get 200."""
    started = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        results = list(pool.map(lambda request: _send(port, request), requests))
    elapsed = time.perf_counter() - started
    statuses = {status for status, _ in results}
    if statuses != {200}:
        raise RuntimeError(f"answers other than 200: {sorted(statuses)}")
    return {"elapsed": elapsed, "latencies": [latency for _, latency in results]}


class LoadProcess:
    """The senders run in another process: they must not share a GIL with anything measured."""

    def __init__(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))

    def run(self, port: int, requests: list[bytes], senders: int) -> dict[str, Any]:
        return self.pool.submit(run_phase, port, requests, senders).result()

    def close(self) -> None:
        self.pool.shutdown()


class Ids:
    """Order ids never used twice in a run (a duplicate would be answered as one)."""

    def __init__(self) -> None:
        self.next = 1

    def take(self, count: int) -> int:
        first, self.next = self.next, self.next + count
        return first


# --- the server, and what it costs --------------------------------------------------


class Gunicorn:
    """gunicorn serving this module's views against ``database``."""

    def __init__(self, database: dict[str, Any]) -> None:
        from django_pg_resilience.testing.cluster import free_port

        self.port = free_port()
        env = {**os.environ, ENV: json.dumps(database), "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--chdir",
                str(ROOT / "bench"),
                f"--workers={WORKERS}",
                f"--threads={THREADS}",
                "--worker-class=gthread",
                "--backlog=512",
                "--log-level=warning",
                f"--bind=127.0.0.1:{self.port}",
                "bench_webhooks:wsgi_app()",
            ],
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("gunicorn exited")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("gunicorn did not listen within 60 s")

    def workers(self) -> list[int]:
        return children(self.process.pid)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def postmaster_pid(node: Any) -> int:
    return int((node.data_dir / "postmaster.pid").read_text().split()[0])


# --- round trips -------------------------------------------------------------------


def statements_since_reset(node: Any) -> int:
    rows = node.query(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
        "WHERE query NOT ILIKE '%pg_stat_statements%'"
    )
    return int(rows[0][0])


def count_round_trips(
    node: Any, load: LoadProcess, port: int, ids: Ids, phases: tuple[str, ...]
) -> dict[str, float]:
    """Statements the server ran per delivery, one sender, 1 KiB; duplicates too."""
    counted: dict[str, float] = {}
    count = 40
    for name in phases:
        requests = http_requests(name, ids.take(count), count, SIZES["1KiB"], port)
        node.query("SELECT pg_stat_statements_reset()")
        load.run(port, requests, 1)
        counted[name] = round(statements_since_reset(node) / count, 2)
        if name in ("inline", "async"):
            node.query("SELECT pg_stat_statements_reset()")
            load.run(port, requests, 1)
            counted[f"{name}-duplicate"] = round(statements_since_reset(node) / count, 2)
    return counted


# --- the matrix -------------------------------------------------------------------


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
    }


def run_cell(
    server: Gunicorn,
    node: Any,
    load: LoadProcess,
    ids: Ids,
    size_name: str,
    senders: int,
    rounds: int,
    phases: tuple[str, ...],
    scale: float,
) -> dict[str, Any]:
    """One cell of the matrix: every phase, ``rounds`` times, in a rotating order."""
    count = max(20, int(REQUESTS[size_name] * scale))
    size = SIZES[size_name]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in phases}
    for name in phases:  # warm up: imports, pools, prepared statements
        load.run(server.port, http_requests(name, ids.take(40), 40, size, server.port), senders)
    for round_number in range(rounds):
        shift = round_number % len(phases)
        for name in phases[shift:] + phases[:shift]:
            requests = http_requests(name, ids.take(count), count, size, server.port)
            postgres = children(postmaster_pid(node))
            app_cpu, db_cpu = cpu_seconds(server.workers()), cpu_seconds(postgres)
            run = load.run(server.port, requests, senders)
            run["app_cpu"] = cpu_seconds(server.workers()) - app_cpu
            run["db_cpu"] = cpu_seconds(postgres) - db_cpu
            runs[name].append(run)
    return summarise_cell(runs, count)


def summarise_cell(runs: dict[str, list[dict[str, Any]]], count: int) -> dict[str, Any]:
    def per_round(slow: str, fast: str) -> list[float]:
        # slow's deliveries per second over fast's in one round: fast's elapsed
        # time over slow's, for the same number of deliveries.
        return [
            round(f["elapsed"] / s["elapsed"], 3)
            for f, s in zip(runs[fast], runs[slow], strict=True)
        ]

    phases = {}
    for name, name_runs in runs.items():
        latencies = list(itertools.chain.from_iterable(r["latencies"] for r in name_runs))
        deliveries = len(latencies)
        phases[name] = {
            "deliveries": deliveries,
            "per_second": round(deliveries / sum(r["elapsed"] for r in name_runs), 1),
            **latency_summary(latencies),
            "app_cpu_ms": round(1000 * sum(r["app_cpu"] for r in name_runs) / deliveries, 3),
            "db_cpu_ms": round(1000 * sum(r["db_cpu"] for r in name_runs) / deliveries, 3),
        }
    ratios = {}
    for key, slow, fast in (
        ("inline_vs_plain_atomic", "inline", "plain-atomic"),
        ("async_vs_plain", "async", "plain"),
        ("inline_vs_plain", "inline", "plain"),
        ("plain_atomic_vs_plain", "plain-atomic", "plain"),
    ):
        rounds = per_round(slow, fast)
        ratios[key] = {"median": round(statistics.median(rounds), 3), "rounds": rounds}
    if "durable" in runs:
        rounds = per_round("durable", "inline")
        ratios["durable_vs_inline"] = {
            "median": round(statistics.median(rounds), 3),
            "rounds": rounds,
        }
    return {"deliveries_per_phase_and_round": count, "phases": phases, "ratios": ratios}


# --- the profile of one delivery, in this process ------------------------------------


def _median_ms(samples: list[float]) -> float:
    return round(1000 * statistics.median(samples), 4)


def profile_one_delivery(ids: Ids, count: int) -> dict[str, Any]:
    """Each step of an inline delivery timed on its own (no HTTP), and a CPU profile.

    Steps: the signature, the JSON parse, the rest of read_delivery (headers,
    key, digest), BEGIN + the dedup statement, the handler's insert, COMMIT,
    and the whole request through Django's test client; the same for the
    plain view in transaction.atomic. Wall times, medians over ``count``.
    """
    from django.db import connection, transaction
    from django.test import Client, RequestFactory

    from django_pg_resilience.testing.webhooks import shopify_request
    from django_pg_resilience.webhooks import processing

    orders = _views()["inline"]
    factory, client = RequestFactory(), Client()
    steps: dict[str, list[float]] = {}

    def timed(step: str, started: float) -> float:
        now = time.perf_counter()
        steps.setdefault(step, []).append(now - started)
        return now

    for _ in range(count + 20):  # the first 20 warm up
        delivery = shopify_request(order(ids.take(1), SIZES["1KiB"]), SECRET)
        request = factory.post("/inline", **delivery.client_kwargs())
        view = orders()
        view.setup(request)
        started = time.perf_counter()
        view.verify(request)
        now = timed("signature", started)
        json.loads(delivery.body)
        timed("json_parse", now)
        now = time.perf_counter()
        stored = view.read_delivery(request)
        timed("read_delivery (signature, parse, headers, key, digest)", now)
        now = time.perf_counter()
        with transaction.atomic():
            seen = processing._store(stored, "default", status="succeeded", attempts=1)
            now = timed("BEGIN + dedup statement", now)
            assert seen.pk is not None
            view.handle(processing._event_from(seen.pk, stored, "default", seen.replayed))
            now = timed("handler (the order insert)", now)
        timed("COMMIT", now)
        payload = json.loads(delivery.body)
        now = time.perf_counter()
        with transaction.atomic():
            insert_order(payload["id"] + 10**9)
            now = timed("plain-atomic: BEGIN + insert", now)
        timed("plain-atomic: COMMIT", now)
        for name in ("inline", "plain-atomic"):
            delivery = shopify_request(order(ids.take(1), SIZES["1KiB"]), SECRET)
            now = time.perf_counter()
            assert client.post(f"/{name}", **delivery.client_kwargs()).status_code == 200
            timed(f"whole request, test client: {name}", now)
    profile = {step: _median_ms(samples[20:]) for step, samples in steps.items()}

    profiler = cProfile.Profile()
    deliveries = [
        shopify_request(order(ids.take(1), SIZES["1KiB"]), SECRET).client_kwargs()
        for _ in range(count)
    ]
    profiler.enable()
    for kwargs in deliveries:
        client.post("/inline", **kwargs)
    profiler.disable()
    connection.close()
    stats = pstats.Stats(profiler)
    top = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:20]  # type: ignore[attr-defined]
    cpu_top = [
        {
            "function": f"{Path(file).name}:{line}({function})",
            "self_ms_per_delivery": round(1000 * self_time / count, 4),
            "calls_per_delivery": round(calls / count, 2),
        }
        for (file, line, function), (_, calls, self_time, _, _) in top
    ]
    return {"steps_ms": profile, "cprofile_top_self_time": cpu_top}


# --- main ------------------------------------------------------------------------------


def _targets(cluster: Any, bouncer: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    primary = cluster.primary
    yield "direct", {"host": primary.host, "port": primary.port, "prepare_threshold": 5}
    yield "pgbouncer", {"host": bouncer.host, "port": bouncer.port, "prepare_threshold": None}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer deliveries (a smoke run)")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 6)
    # A terminated run still stops its servers (gunicorn, PgBouncer, the cluster).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    scale = 0.3 if args.quick else 1.0

    from django_pg_resilience.testing import LocalCluster, PgBouncer

    cells: dict[str, Any] = {}
    round_trips: dict[str, Any] = {}
    settings = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "top"}
    with (
        LocalCluster(standbys=1, server_settings=settings) as cluster,
        PgBouncer(cluster.primary, pool_mode="transaction") as bouncer,
    ):
        primary = cluster.primary
        primary.query("CREATE EXTENSION pg_stat_statements")
        primary.query(
            "CREATE TABLE bench_order (id bigserial PRIMARY KEY, shopify_order_id bigint UNIQUE)"
        )
        configure_django({"host": primary.host, "port": primary.port, "prepare_threshold": 5})
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        ids, load = Ids(), LoadProcess()
        try:
            for target, database in _targets(cluster, bouncer):
                server = Gunicorn(database)
                try:
                    round_trips[target] = count_round_trips(
                        primary, load, server.port, ids, (*PHASES, "durable")
                    )
                    for size_name in SIZES:
                        for senders in SENDERS:
                            headline = (target, size_name, senders) == ("direct", "1KiB", 8)
                            phases = (*PHASES, "durable") if headline else PHASES
                            name = f"{target} {size_name} {senders} sender{'s' * (senders > 1)}"
                            cells[name] = run_cell(
                                server,
                                primary,
                                load,
                                ids,
                                size_name,
                                senders,
                                rounds,
                                phases,
                                scale,
                            )
                            print_cell(name, cells[name])
                finally:
                    server.close()
            profile = profile_one_delivery(ids, 100 if args.quick else 400)
        finally:
            load.close()
            from django.db import connections

            connections.close_all()

    result = summary(cells, round_trips, profile, rounds, args.quick)
    print_summary(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {RESULTS.relative_to(ROOT)}")
    return result


def summary(
    cells: dict[str, Any],
    round_trips: dict[str, Any],
    profile: dict[str, Any],
    rounds: int,
    quick: bool,
) -> dict[str, Any]:
    headline = cells["direct 1KiB 8 senders"]
    ratios, phases = headline["ratios"], headline["phases"]
    inline_ratio = ratios["inline_vs_plain_atomic"]["median"]
    async_ratio = ratios["async_vs_plain"]["median"]
    bouncer = cells["pgbouncer 1KiB 8 senders"]["ratios"]
    return {
        "benchmark": "webhooks",
        "server": f"gunicorn gthread, {WORKERS} workers x {THREADS} threads, a pool per worker",
        "rounds": rounds,
        # The headline cell (direct, 1 KiB, 8 senders), under the keys bench/run.py shows.
        "shopify_vs_plain_ratio": ratios["inline_vs_plain"]["median"],
        "plain_atomic_vs_plain_ratio": ratios["plain_atomic_vs_plain"]["median"],
        "shopify_async_vs_plain_ratio": async_ratio,
        "shopify_vs_plain_atomic_ratio": inline_ratio,
        "phases": {**phases, "shopify": phases["inline"]},
        "durable_ack_added_p50_ms": round(
            phases["durable"]["p50_ms"] - phases["inline"]["p50_ms"], 2
        ),
        "durable_ack_added_p99_ms": round(
            phases["durable"]["p99_ms"] - phases["inline"]["p99_ms"], 2
        ),
        "target_inline_vs_atomic": TARGET_INLINE_VS_ATOMIC,
        "target_async_vs_plain": TARGET_ASYNC_VS_PLAIN,
        "inline_target_met": inline_ratio >= TARGET_INLINE_VS_ATOMIC,
        "async_target_met": async_ratio >= TARGET_ASYNC_VS_PLAIN,
        "pgbouncer_inline_vs_plain_atomic": bouncer["inline_vs_plain_atomic"]["median"],
        "pgbouncer_async_vs_plain": bouncer["async_vs_plain"]["median"],
        "round_trips_per_delivery": round_trips,
        "cells": cells,
        "profile_one_delivery": profile,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count() or 0},
        "quick": quick,
    }


def print_cell(name: str, cell: dict[str, Any]) -> None:
    print(f"\n{name} ({cell['deliveries_per_phase_and_round']} deliveries per phase and round)")
    print(f"  {'phase':<14}{'/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'app CPU ms':>12}{'db CPU ms':>11}")
    for phase, row in cell["phases"].items():
        print(
            f"  {phase:<14}{row['per_second']:>8}{row['p50_ms']:>9}{row['p99_ms']:>9}"
            f"{row['app_cpu_ms']:>12}{row['db_cpu_ms']:>11}"
        )
    print(
        "  ratios (median of rounds): "
        + ", ".join(f"{key} {value['median']}" for key, value in cell["ratios"].items())
    )


def print_summary(result: dict[str, Any]) -> None:
    def mark(met: bool) -> str:
        return "met" if met else "NOT met"

    print(
        f"\ninline / plain-atomic: {result['shopify_vs_plain_atomic_ratio']} (target >= "
        f"{TARGET_INLINE_VS_ATOMIC}: {mark(result['inline_target_met'])}); async / plain: "
        f"{result['shopify_async_vs_plain_ratio']} (target >= {TARGET_ASYNC_VS_PLAIN}: "
        f"{mark(result['async_target_met'])}); behind PgBouncer "
        f"{result['pgbouncer_inline_vs_plain_atomic']} / {result['pgbouncer_async_vs_plain']} "
        f"(direct, 1 KiB, 8 senders; load average {result['load_average_1m']})"
    )
    print(f"round trips per delivery: {json.dumps(result['round_trips_per_delivery'])}")
    print("one inline delivery, step by step (ms, median):")
    for step, value in result["profile_one_delivery"]["steps_ms"].items():
        print(f"  {step:<58}{value:>9}")


if __name__ == "__main__":
    main()
