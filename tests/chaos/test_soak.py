"""Load and soak: exact counts across a failover, flat memory over reconnect cycles.

CHAOS_DELIVERIES (default 2000) and CHAOS_RECONNECT_CYCLES (default 2000; the
full 10,000 is run by hand: ``CHAOS_RECONNECT_CYCLES=10000 pytest -m slow tests/chaos``)
size them.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from django_pg_resilience import stats
from django_pg_resilience.backend.alias import reset as reset_alias_states
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
from tests.chaos import report
from tests.chaos.report import SoakReport
from tests.chaos.scenario import Baseline, migrate, open_fds, poll, running_app, server_connections
from tests.chaos.test_matrix import failover
from tests.chaos.traffic import Result, http_call, order_delivery
from tests.testapp.models import ChaosOrder

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.usefixtures("unblocked_db")]

DELIVERIES = int(os.environ.get("CHAOS_DELIVERIES", "2000"))
RECONNECT_CYCLES = int(os.environ.get("CHAOS_RECONNECT_CYCLES", "2000"))
CONCURRENCY = 32
#: How long a sender keeps retrying one delivery (Shopify: 4 hours; here: bounded).
SENDER_PATIENCE = 60.0


def test_deliveries_with_duplicates_across_a_failover_have_exact_counts(
    pg_fresh_cluster: LocalCluster,
) -> None:
    cluster = pg_fresh_cluster
    migrate(cluster.primary)
    cluster.wait_for_replay(cluster.standbys[0])
    unique = round(DELIVERIES * 0.7)
    keys = [f"soak-{n}" for n in range(unique)]
    rng = random.Random(2000)
    plan = keys + [rng.choice(keys) for _ in range(DELIVERIES - unique)]
    rng.shuffle(plan)
    order_ids = {key: n + 1 for n, key in enumerate(keys)}

    done = 0
    done_lock = threading.Lock()
    fail_now = threading.Event()
    replies: list[list[Result]] = []

    def deliver(url: str, key: str) -> list[Result]:
        nonlocal done
        body, headers = order_delivery(key, order_ids[key])
        attempts: list[Result] = []
        deadline = time.monotonic() + SENDER_PATIENCE
        while time.monotonic() < deadline:
            result = http_call(
                url + "/webhooks/orders", kind="webhook", key=key, body=body, headers=headers
            )
            attempts.append(result)
            if result.ok:
                break
            time.sleep(0.2)  # a sender's backoff before its retry
        with done_lock:
            done += 1
            if done >= DELIVERIES * 0.3:
                fail_now.set()
        return attempts

    started = time.monotonic()
    with running_app(cluster.endpoint) as url, ThreadPoolExecutor(CONCURRENCY) as pool:
        futures = [pool.submit(deliver, url, key) for key in plan]
        assert fail_now.wait(120), "30 % of the deliveries never completed"
        t_fault = time.monotonic()
        new = failover(cluster)
        failover_s = time.monotonic() - t_fault
        replies = [future.result(SENDER_PATIENCE + 60) for future in futures]
    elapsed = time.monotonic() - started

    finals = [attempts[-1] for attempts in replies]
    every = [r for attempts in replies for r in attempts]
    table = ChaosOrder._meta.db_table
    ((rows, distinct),) = new.query(f"SELECT count(*), count(DISTINCT webhook_key) FROM {table}")
    ((events,),) = new.query(
        "SELECT count(*) FROM django_pg_resilience_webhookevent WHERE status = 'succeeded'"
    )
    figures = {
        "deliveries": DELIVERIES,
        "unique": unique,
        "concurrency": CONCURRENCY,
        "order_rows": rows,
        "distinct_keys": distinct,
        "succeeded_events": events,
        "processed_acks": sum(1 for r in finals if r.outcome == "processed"),
        "duplicate_acks": sum(1 for r in finals if r.outcome == "duplicate"),
        "retries_503": sum(1 for r in every if r.status == 503),
        "http_500": sum(1 for r in every if r.status == 500),
        "failover_s": round(failover_s, 2),
        "elapsed_s": round(elapsed, 1),
    }
    ok = (
        all(r.ok for r in finals)
        and rows == distinct == events == unique
        and figures["processed_acks"] + figures["duplicate_acks"] == DELIVERIES
        and figures["http_500"] == 0
        and all(r.status == 503 for r in every if not r.ok)
    )
    report.record_soak(
        SoakReport(
            f"{DELIVERIES} deliveries, 30 % duplicates, c={CONCURRENCY}, failover", figures, ok
        )
    )
    assert ok, figures


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_reconnect_cycles_keep_memory_fds_and_connections_flat(
    pg_fresh_cluster: LocalCluster,
) -> None:
    cluster = pg_fresh_cluster
    endpoint = cluster.endpoint
    baseline = Baseline.take(cluster.primary)
    stats.reset()
    reset_alias_states()
    warm_up = max(50, RECONNECT_CYCLES // 10)
    with database_alias("chaos_reconnect", endpoint, OPTIONS={"connect_timeout": 2}) as alias:
        connection = connections[alias]
        started = time.monotonic()
        for cycle in range(RECONNECT_CYCLES):
            if cycle == warm_up:
                rss_after_warm_up, fds_after_warm_up = _rss_kib(), open_fds()
            # The first statement after a reset meets a dead socket: the backend
            # reconnects and re-runs the read.
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                assert cursor.fetchone() == (1,)
            endpoint.reset_all()
        elapsed = time.monotonic() - started
        rss_end, fds_end = _rss_kib(), open_fds()
        connection.close()
    reconnects = stats.snapshot().get("reconnects", {}).get("chaos_reconnect", 0)
    back = poll(lambda: server_connections(cluster.primary) <= baseline.connections, 15)
    figures = {
        "cycles": RECONNECT_CYCLES,
        "elapsed_s": round(elapsed, 1),
        "cycles_per_s": round(RECONNECT_CYCLES / elapsed),
        "reconnects": reconnects,
        "rss_growth_kib": rss_end - rss_after_warm_up,
        "fds_growth": fds_end - fds_after_warm_up,
        "server_connections_back": back,
    }
    ok = (
        figures["rss_growth_kib"] < 16 * 1024
        and figures["fds_growth"] <= 2
        and back
        and reconnects >= RECONNECT_CYCLES - 1
    )
    report.record_soak(SoakReport(f"{RECONNECT_CYCLES} reconnect cycles", figures, ok))
    assert ok, figures
