#!/usr/bin/env python3
"""Bounded time, with default settings: ``python3 bench/bench_bounded_time.py [--quick]``.

Real PostgreSQL (LocalCluster), this process as the app, default settings
(``deadline`` 4 s, ``liveness_after`` 1 s):

* ``silent_proxy_persistent`` / ``silent_proxy_pool``: ``CONN_MAX_AGE=60``, or
  ``OPTIONS["pool"]`` (min 2, max 8). Four threads each have a read in flight
  when the endpoint (an ACKing userspace proxy) goes silent: when each ends,
  and how (target: within ``deadline`` + 1 s of the fault). The same threads
  then keep reading while it stays silent: time to the error, all of them and
  those that started with the breaker open (target p99 <= 20 ms). The primary
  is killed, the standby promoted, and the endpoint moved to it ``outage``
  seconds after the fault (a minute; ``--outage`` or ``--quick`` for less):
  time from the move to the first successful read (target <= 1 s).
* ``silent_netns``: the same in-flight reads, persistent connections, against
  a primary in a network namespace of its own that goes silent (not even an
  ACK); skipped where namespaces cannot be created.
* ``long_query``: a legitimate ``SELECT pg_sleep(10)`` on a healthy server
  completes; the liveness checks it caused, per second (target <= 1), and the
  connections opened to the endpoint meanwhile.
* ``pool_burst``: pool max 2 (timeout 5), ten threads each holding a
  connection for ``pg_sleep(2)`` at once: errors by kind (target: no
  ``DatabaseUnavailable``) and every state the breaker was seen in (target:
  only "closed"); then five plain reads: their latency and that they succeed.

Prints a table and writes ``bench/results/bounded_time.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "bounded_time.json"
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_backend import _create_table, _percentile, _setup_django  # noqa: E402

#: Threads with a read in flight at the fault.
IN_FLIGHT = 4
#: Each request after the in-flight one waits this long before the next.
REQUEST_INTERVAL = 0.020
#: The in-flight read: long enough to be caught running on the server.
IN_FLIGHT_SQL = "SELECT count(*) FROM testapp_item /* bt-inflight */, pg_sleep(1)"


def _outcome(exc: BaseException | None) -> str:
    """How a call ended: "ok", "DatabaseUnavailable", "PoolTimeout" or the error's class."""
    if exc is None:
        return "ok"
    from psycopg_pool import PoolTimeout

    from django_pg_resilience.errors import DatabaseUnavailable

    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(error, DatabaseUnavailable) for error in chain):
        return "DatabaseUnavailable"
    if any(isinstance(error, PoolTimeout) for error in chain):
        return "PoolTimeout"
    return type(exc).__name__


def _ms(seconds: list[float], fraction: float) -> float | None:
    return round(_percentile(seconds, fraction) * 1000, 1) if seconds else None


def _wait_until_running(node: Any, marker: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (
        node.query(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s",
            (f"%{marker}%",),
        )[0][0]
        < count
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} statements {marker!r} never ran at once on {node}")
        time.sleep(0.01)


class _Workers:
    """Threads of an app: each runs one read in flight, then requests until told to stop.

    Every call ends with ``close_if_unusable_or_obsolete()``, as a request does
    (with the pool it returns the connection).
    """

    def __init__(self, alias: str, threads: int) -> None:
        self.alias = alias
        self.lock = threading.Lock()
        self.in_flight: list[dict[str, Any]] = []
        #: (start, end, breaker state at the start, outcome)
        self.requests: list[tuple[float, float, str, str]] = []
        self.ready = threading.Barrier(threads + 1)
        self.later = threading.Event()
        self.stop = threading.Event()
        self.workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for worker in self.workers:
            worker.start()

    def _call(self, work: Any) -> tuple[float, float, str]:
        from django.db import connections

        started = time.monotonic()
        error: BaseException | None = None
        try:
            work()
        except Exception as exc:
            error = exc
        ended = time.monotonic()
        connections[self.alias].close_if_unusable_or_obsolete()
        return started, ended, _outcome(error)

    def _run(self) -> None:
        from django.db import connections

        from django_pg_resilience.backend.alias import alias_state
        from tests.testapp.models import Item

        def in_flight() -> None:
            with connections[self.alias].cursor() as cursor:
                cursor.execute(IN_FLIGHT_SQL)
                cursor.fetchone()

        def read() -> None:
            Item.objects.using(self.alias).filter(pk=1).first()

        try:
            self._call(read)  # connected before the fault
            self.ready.wait()
            started, ended, outcome = self._call(in_flight)
            with self.lock:
                self.in_flight.append({"started": started, "ended": ended, "outcome": outcome})
            self.later.wait()
            breaker = alias_state(self.alias).breaker
            while not self.stop.is_set():
                state = breaker.state
                started, ended, outcome = self._call(read)
                with self.lock:
                    self.requests.append((started, ended, state, outcome))
                self.stop.wait(REQUEST_INTERVAL)
        finally:
            connections[self.alias].close()

    def wait_in_flight(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.in_flight) < len(self.workers) and time.monotonic() < deadline:
            time.sleep(0.01)

    def first_success_after(self, instant: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                ends = [end for _, end, _, outcome in self.requests if outcome == "ok"]
            after = [end for end in ends if end >= instant]
            if after:
                return min(after) - instant
            time.sleep(0.005)
        return None

    def close(self) -> None:
        self.later.set()
        self.stop.set()
        for worker in self.workers:
            worker.join(60)


def _in_flight_figures(workers: _Workers, fault_at: float, deadline: float) -> dict[str, Any]:
    ends = sorted(round(item["ended"] - fault_at, 3) for item in workers.in_flight)
    ages = sorted(round(fault_at - item["started"], 3) for item in workers.in_flight)
    return {
        "threads": len(workers.workers),
        "ended_s_after_fault": ends,
        "statement_age_at_fault_s": ages,
        "outcomes": dict(Counter(item["outcome"] for item in workers.in_flight)),
        "still_waiting": len(workers.workers) - len(ends),
        "worst_s": max(ends) if ends else None,
        "target_s": deadline + 1.0,
    }


# --- 1. a silent endpoint (ACKing proxy) ---------------------------------------------


def bench_silent_proxy(mode: str, outage: float) -> dict[str, Any]:
    """Persistent connections or the pool, behind an EndpointProxy that goes silent."""
    from django_pg_resilience import stats
    from django_pg_resilience.conf import BackendSettings
    from django_pg_resilience.testing import LocalCluster, reset_process_state
    from django_pg_resilience.testing.django import database_alias

    reset_process_state()
    alias = f"silent_{mode}"
    options: dict[str, Any] = {}
    extra: dict[str, Any] = {"CONN_MAX_AGE": 60}
    if mode == "pool":
        options["pool"] = {"min_size": 2, "max_size": 8}
        extra = {}
    deadline = BackendSettings().deadline
    with (
        LocalCluster(standbys=1) as cluster,
        database_alias(alias, cluster.endpoint, OPTIONS=options, **extra),
    ):
        endpoint = cluster.endpoint
        _create_table(alias)
        cluster.wait_for_replay(cluster.standbys[0])
        workers = _Workers(alias, IN_FLIGHT)
        try:
            workers.ready.wait()
            _wait_until_running(cluster.primary, "bt-inflight", IN_FLIGHT)
            fault_at = time.monotonic()
            endpoint.blackhole()
            workers.wait_in_flight(timeout=60)
            later_at = time.monotonic()
            workers.later.set()
            # A real failover meanwhile, invisible behind the silent endpoint.
            cluster.kill(cluster.primary)
            new = cluster.promote(cluster.standbys[0])
            workers.stop.wait(max(0.0, fault_at + outage - time.monotonic()))
            moved_at = time.monotonic()
            endpoint.point_to(new)
            endpoint.restore()
            back = workers.first_success_after(moved_at, timeout=15)
            workers.stop.wait(0.3)
        finally:
            workers.close()
            if mode == "pool":
                from django.db import connections

                connections[alias].close_pool()  # type: ignore[attr-defined]
    silent = [
        (end - start, state, outcome)
        for start, end, state, outcome in workers.requests
        if later_at <= start and end < moved_at
    ]
    errors = [seconds for seconds, _, outcome in silent if outcome != "ok"]
    open_errors = [
        seconds for seconds, state, outcome in silent if outcome != "ok" and state == "open"
    ]
    return {
        "mode": mode,
        "deadline_s": deadline,
        "in_flight": _in_flight_figures(workers, fault_at, deadline),
        "later": {
            "requests": len(silent),
            "outcomes": dict(Counter(outcome for _, _, outcome in silent)),
            "states_at_start": dict(Counter(state for _, state, _ in silent)),
            "error_p50_ms": _ms(errors, 0.5),
            "error_p99_ms": _ms(errors, 0.99),
            "error_max_ms": _ms(errors, 1.0),
            "open_error_p50_ms": _ms(open_errors, 0.5),
            "open_error_p99_ms": _ms(open_errors, 0.99),
            "open_error_max_ms": _ms(open_errors, 1.0),
            "open_errors_over_20ms": sum(1 for seconds in open_errors if seconds > 0.020),
            # A request that began before the move and ended after it (a probe in flight).
            "spanning_move_ms": [
                round((end - start) * 1000, 1)
                for start, end, _, _ in workers.requests
                if later_at <= start < moved_at <= end
            ],
            "target_open_p99_ms": 20,
        },
        "return": {
            "outage_s": round(moved_at - fault_at, 2),
            "first_success_after_move_s": round(back, 3) if back is not None else None,
            "target_s": 1.0,
        },
        "counters": _counters(stats.snapshot(), alias),
    }


def _counters(snapshot: dict[str, dict[str, float]], alias: str) -> dict[str, float]:
    return {name: by_alias[alias] for name, by_alias in snapshot.items() if alias in by_alias}


# --- 2. a peer that sends nothing at all (network namespace) -------------------------


def bench_silent_netns() -> dict[str, Any]:
    from django_pg_resilience import stats
    from django_pg_resilience.conf import BackendSettings
    from django_pg_resilience.testing import (
        LocalCluster,
        netns_unavailable_reason,
        reset_process_state,
    )
    from django_pg_resilience.testing.django import database_alias

    reason = netns_unavailable_reason()
    if reason is not None:
        return {"skipped": f"no network namespace for a silent peer: {reason}"}
    reset_process_state()
    alias = "silent_netns"
    deadline = BackendSettings().deadline
    with (
        LocalCluster(standbys=0, netns=True) as cluster,
        database_alias(alias, cluster.primary, CONN_MAX_AGE=60),
    ):
        primary = cluster.primary
        assert primary.namespace is not None
        _create_table(alias)
        workers = _Workers(alias, IN_FLIGHT)
        try:
            workers.ready.wait()
            _wait_until_running(primary, "bt-inflight", IN_FLIGHT)
            fault_at = time.monotonic()
            primary.namespace.silence()
            try:
                workers.wait_in_flight(timeout=60)
            finally:
                primary.namespace.restore()
        finally:
            workers.close()
    return {
        "mode": "persistent",
        "deadline_s": deadline,
        "in_flight": _in_flight_figures(workers, fault_at, deadline),
        "counters": _counters(stats.snapshot(), alias),
    }


# --- 3. a long query on a healthy server ------------------------------------------------


def bench_long_query(cluster: Any, seconds: float) -> dict[str, Any]:
    from django.db import connections

    from django_pg_resilience import stats
    from django_pg_resilience.testing import reset_process_state
    from django_pg_resilience.testing.django import database_alias

    reset_process_state()
    alias = "long_query"
    endpoint = cluster.endpoint
    with database_alias(alias, endpoint):
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            accepted_before = endpoint.accepted
            started = time.monotonic()
            error: BaseException | None = None
            try:
                cursor.execute("SELECT pg_sleep(%s)", (seconds,))
                cursor.fetchone()
            except Exception as exc:
                error = exc
            elapsed = time.monotonic() - started
            opened = endpoint.accepted - accepted_before
        checks = stats.snapshot().get("liveness_checks", {}).get(alias, 0)
    return {
        "sleep_s": seconds,
        "outcome": _outcome(error),
        "elapsed_s": round(elapsed, 3),
        "liveness_checks": checks,
        "liveness_checks_per_s": round(checks / elapsed, 2),
        "connections_opened_meanwhile": opened,
        "silent_peer_aborts": stats.snapshot().get("silent_peer_aborts", {}).get(alias, 0),
        "target_checks_per_s": 1.0,
    }


# --- 3b. a long statement found alive, then the fault ----------------------------------


def bench_late_fault(cluster: Any, found_alive_for: float, cap: float) -> dict[str, Any]:
    """One statement, alone on its alias, checked alive before the endpoint goes silent.

    Nothing else in the process uses the alias, so only the statement's own
    liveness checks can notice the silence. After ``cap`` seconds the endpoint
    is restored (the answer then arrives) so the run stays bounded.
    """
    from django.db import connections

    from django_pg_resilience import stats
    from django_pg_resilience.conf import BackendSettings
    from django_pg_resilience.testing import reset_process_state
    from django_pg_resilience.testing.django import database_alias

    reset_process_state()
    alias = "late_fault"
    endpoint = cluster.endpoint
    ended = threading.Event()
    outcome: dict[str, Any] = {}

    def statement() -> None:
        error: BaseException | None = None
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT pg_sleep(%s)", (found_alive_for + 2.0,))
                cursor.fetchone()
        except Exception as exc:
            error = exc
        finally:
            outcome["ended"] = time.monotonic()
            outcome["outcome"] = _outcome(error)
            connections[alias].close()
            ended.set()

    with database_alias(alias, endpoint, CONN_MAX_AGE=60):
        runner = threading.Thread(target=statement, daemon=True)
        runner.start()
        ended.wait(found_alive_for)
        checks_before = stats.snapshot().get("liveness_checks", {}).get(alias, 0)
        fault_at = time.monotonic()
        endpoint.blackhole()
        ended.wait(cap)
        still_waiting = not ended.is_set()
        endpoint.restore()
        runner.join(30)
    deadline = BackendSettings().deadline
    return {
        "statement_age_at_fault_s": found_alive_for,
        "liveness_checks_before_fault": checks_before,
        "liveness_checks_total": stats.snapshot().get("liveness_checks", {}).get(alias, 0),
        "still_waiting_at_cap": still_waiting,
        "cap_s": cap,
        "ended_s_after_fault": None if still_waiting else round(outcome["ended"] - fault_at, 3),
        "outcome": "still waiting, then ended when the endpoint was restored: "
        + outcome.get("outcome", "?")
        if still_waiting
        else outcome.get("outcome"),
        "target_s": deadline + 1.0,
    }


# --- 4. pool exhaustion under a burst -------------------------------------------------


def bench_pool_burst(cluster: Any, threads: int, hold: float) -> dict[str, Any]:
    from django.db import connections

    from django_pg_resilience import stats
    from django_pg_resilience.backend.alias import alias_state
    from django_pg_resilience.testing import reset_process_state
    from django_pg_resilience.testing.django import database_alias
    from tests.testapp.models import Item

    reset_process_state()
    alias = "burst"
    pool = {"min_size": 2, "max_size": 2, "timeout": 5}
    outcomes: list[str] = []
    states_seen: set[str] = set()
    lock = threading.Lock()
    start = threading.Barrier(threads)
    watching = threading.Event()

    def plain_reads(count: int) -> tuple[list[float], list[str]]:
        latencies, results = [], []
        for _ in range(count):
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                Item.objects.using(alias).filter(pk=1).first()
            except Exception as exc:
                error = exc
            latencies.append(round((time.perf_counter() - started) * 1000, 2))
            results.append(_outcome(error))
            connections[alias].close()
        return latencies, results

    def hold_one() -> None:
        start.wait()
        error: BaseException | None = None
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT pg_sleep(%s)", (hold,))
        except Exception as exc:
            error = exc
        finally:
            connections[alias].close()
        with lock:
            outcomes.append(_outcome(error))

    def watch_breaker() -> None:
        breaker = alias_state(alias).breaker
        while not watching.is_set():
            states_seen.add(breaker.state)
            time.sleep(0.001)

    with database_alias(alias, cluster.endpoint, OPTIONS={"pool": pool}):
        _create_table(alias)
        before_latencies, _ = plain_reads(5)
        watcher = threading.Thread(target=watch_breaker, daemon=True)
        watcher.start()
        burst_started = time.monotonic()
        holders = [threading.Thread(target=hold_one) for _ in range(threads)]
        for holder in holders:
            holder.start()
        for holder in holders:
            holder.join(60)
        burst_s = time.monotonic() - burst_started
        after_latencies, after_outcomes = plain_reads(5)
        watching.set()
        watcher.join(5)
        states_seen.add(alias_state(alias).breaker.state)
        connections[alias].close_pool()  # type: ignore[attr-defined]
    counted = Counter(outcomes)
    return {
        "pool": pool,
        "threads": threads,
        "hold_s": hold,
        "burst_s": round(burst_s, 2),
        "outcomes": dict(counted),
        "pool_timeouts": counted.get("PoolTimeout", 0),
        "database_unavailable": counted.get("DatabaseUnavailable", 0),
        "other_errors": sum(
            n
            for kind, n in counted.items()
            if kind not in ("ok", "PoolTimeout", "DatabaseUnavailable")
        ),
        "breaker_states_seen": sorted(states_seen),
        "breaker_stayed_closed": states_seen == {"closed"},
        "reads_before_ms": before_latencies,
        "reads_after_ms": after_latencies,
        "reads_after_outcomes": dict(Counter(after_outcomes)),
        "counters": _counters(stats.snapshot(), alias),
    }


# --- main ------------------------------------------------------------------------------


def _table(results: dict[str, Any]) -> str:
    lines = []
    for section, figures in results.items():
        if not isinstance(figures, dict):
            continue
        lines.append(section)
        for key, value in figures.items():
            if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
                value = json.dumps(value)
            if isinstance(value, dict):
                lines.append(f"  {key}")
                lines.extend(f"    {name:<34} {item}" for name, item in value.items())
            else:
                lines.append(f"  {key:<36} {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the measurements; print a table; save and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter outage and long query")
    parser.add_argument(
        "--outage", type=float, default=None, help="seconds of silence before the move (60)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "")
    _setup_django()
    from django_pg_resilience.testing import LocalCluster

    outage = args.outage or (6.0 if args.quick else 60.0)
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
            "note": "figures from one run",
        },
        "quick": args.quick,
    }

    def measure(name: str, figures: dict[str, Any]) -> None:
        results[name] = figures
        print(_table({name: figures}), flush=True)  # as it comes: a later failure keeps it

    measure("silent_proxy_persistent", bench_silent_proxy("persistent", outage))
    measure("silent_proxy_pool", bench_silent_proxy("pool", outage))
    measure("silent_netns", bench_silent_netns())
    with LocalCluster(standbys=0) as cluster:
        measure("long_query", bench_long_query(cluster, 5.0 if args.quick else 10.0))
        measure("late_fault", bench_late_fault(cluster, found_alive_for=2.5, cap=10.0))
        measure("pool_burst", bench_pool_burst(cluster, threads=10, hold=2.0))
    results["machine"]["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    print(_table({"machine": results["machine"]}))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {RESULTS.relative_to(ROOT)}")
    return results


if __name__ == "__main__":
    main()
