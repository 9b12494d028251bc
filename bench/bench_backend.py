#!/usr/bin/env python3
"""The backend's four benchmarks: ``python3 bench/bench_backend.py [--quick]``.

Real PostgreSQL (LocalCluster) and an EndpointProxy, this process as the app:

* ``happy_path``: the same ORM read (``Item.objects.filter(pk=...).first()``)
  through this backend and through Django's stock postgresql backend, straight
  to the primary, interleaved in rounds; ratio of the medians (target <= 1.02).
* ``short_failover``: 16 reader threads, default settings; the endpoint goes
  dark, the primary is killed, the standby promoted and the endpoint moved to
  it 2 s later. Errors reaching callers (target 0) and the longest read
  (target <= outage + 100 ms).
* ``recovery_lag``: repeated short outages (the endpoint refuses, then points
  back); from the instant it points back to the first successful query of a
  running app, this backend vs stock Django with CONN_MAX_AGE=0, both running
  at once, each app thread making a request every 10 ms
  (targets p50 <= 50 ms, p99 <= 250 ms, never worse than stock).
* ``outage_load``: connection attempts per second reaching the dead endpoint
  from 16 threads of one process, this backend vs stock Django (a naive loop:
  every request tries to connect), same request pace (target: a handful/s).
* ``short_failover`` runs several episodes, each on a fresh cluster: the figure
  is the worst episode (one episode is one draw of the probe's jitter).
* ``tradeoff``: the three figures above for several ``backoff_cap`` values, so
  the price of noticing the end of an outage sooner (more attempts while it
  lasts) is measured, not guessed.

Prints a table and writes ``bench/results/backend.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "backend.json"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OURS = "django_pg_resilience.backend"
STOCK = "django.db.backends.postgresql"
REQUEST_INTERVAL = 0.010


def _setup_django() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            USE_TZ=True,
            SECRET_KEY="bench-only",
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
            INSTALLED_APPS=["django.contrib.contenttypes", "django_pg_resilience", "tests.testapp"],
            DATABASES={},
            LOGGING={
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {"null": {"class": "logging.NullHandler"}},
                "loggers": {
                    "django_pg_resilience": {"handlers": ["null"], "propagate": False},
                },
            },
        )
        django.setup()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _create_table(alias: str) -> None:
    from django.db import connections

    from tests.testapp.models import Item

    with connections[alias].schema_editor() as editor:
        editor.create_model(Item)
    Item.objects.using(alias).bulk_create([Item(name=f"item-{n}", quantity=n) for n in range(100)])


def _reset_state() -> None:
    from django_pg_resilience import stats
    from django_pg_resilience.backend.alias import reset as reset_alias_states

    reset_alias_states()
    stats.reset()


# --- 1. happy path -----------------------------------------------------------------


def bench_happy_path(cluster: Any, queries: int, rounds: int) -> dict[str, Any]:
    from django.db import connections

    from django_pg_resilience.testing.django import database_alias
    from tests.testapp.models import Item

    per_round = max(queries // rounds, 1)
    timings: dict[str, list[float]] = {"ours": [], "stock": []}
    with (
        database_alias("hp_ours", cluster.primary, engine=OURS),
        database_alias("hp_stock", cluster.primary, engine=STOCK, OPTIONS={"connect_timeout": 2}),
    ):
        _create_table("hp_ours")
        aliases = {"ours": "hp_ours", "stock": "hp_stock"}
        for alias in aliases.values():  # warm up: connect, caches
            for pk in range(1, 200):
                Item.objects.using(alias).filter(pk=pk % 100 + 1).first()
        for round_no in range(rounds):
            order = ("ours", "stock") if round_no % 2 == 0 else ("stock", "ours")
            for name in order:
                manager = Item.objects.using(aliases[name])
                started = time.perf_counter()
                for n in range(per_round):
                    manager.filter(pk=n % 100 + 1).first()
                timings[name].append((time.perf_counter() - started) / per_round)
        cursor_us = _cursor_overhead(aliases, 20_000 if per_round < 2000 else 50_000)
        for alias in aliases.values():
            connections[alias].close()
    ratios = [o / s for o, s in zip(timings["ours"], timings["stock"], strict=True)]
    return {
        "queries_per_backend": per_round * rounds,
        "rounds": rounds,
        "ours_us_per_query_median": round(statistics.median(timings["ours"]) * 1e6, 1),
        "stock_us_per_query_median": round(statistics.median(timings["stock"]) * 1e6, 1),
        "ratio_median": round(statistics.median(ratios), 4),
        "ratio_total": round(sum(timings["ours"]) / sum(timings["stock"]), 4),
        "target_ratio": 1.02,
        # The backend's own per-statement work, without the round trip: opening
        # and closing a cursor (where the liveness poll and the wrapper live).
        "cursor_open_close_us_ours": cursor_us["ours"],
        "cursor_open_close_us_stock": cursor_us["stock"],
        "cursor_overhead_us": round(cursor_us["ours"] - cursor_us["stock"], 2),
    }


def _cursor_overhead(aliases: dict[str, str], iterations: int) -> dict[str, float]:
    from django.db import connections

    best: dict[str, float] = {}
    for _ in range(3):
        for name, alias in aliases.items():
            connection = connections[alias]
            started = time.perf_counter()
            for _ in range(iterations):
                with connection.cursor():
                    pass
            per_call = (time.perf_counter() - started) / iterations * 1e6
            best[name] = round(min(best.get(name, per_call), per_call), 2)
    return best


# --- 2. short failover under 16 readers -----------------------------------------------


def bench_short_failover(
    threads: int, outage: float, episodes: int, resilience: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``episodes`` failovers, each on a fresh cluster; the worst one is the figure."""
    runs = [_short_failover_once(threads, outage, resilience) for _ in range(episodes)]
    extras = [run["extra_ms"] for run in runs]
    errors = [name for run in runs for name in run["errors"]]
    return {
        "threads": threads,
        "episodes": episodes,
        "outage_s": round(statistics.median(run["outage_s"] for run in runs), 3),
        "reads": sum(run["reads"] for run in runs),
        "errors_to_callers": len(errors),
        "error_types": sorted(set(errors)),
        "longest_read_s": round(max(run["longest_s"] for run in runs), 3),
        "longest_read_minus_outage_ms": max(extras),
        "median_episode_extra_ms": round(statistics.median(extras), 1),
        "extra_ms_per_episode": extras,
        "target_errors": 0,
        "target_extra_ms": 100,
    }


def _short_failover_once(
    threads: int, outage: float, resilience: dict[str, Any] | None
) -> dict[str, Any]:
    from django.db import connections

    from django_pg_resilience.testing import LocalCluster
    from django_pg_resilience.testing.django import database_alias
    from tests.testapp.models import Item

    _reset_state()
    options = {"resilience": resilience} if resilience else {}
    with (
        LocalCluster(standbys=1) as cluster,
        database_alias("sf", cluster.endpoint, OPTIONS=options),
    ):
        _create_table("sf")
        cluster.wait_for_replay(cluster.standbys[0])
        stop = threading.Event()
        lock = threading.Lock()
        errors: list[str] = []
        latencies: list[tuple[float, float]] = []  # (start, seconds)
        ready = threading.Barrier(threads + 1)

        def reader() -> None:
            try:
                Item.objects.using("sf").filter(pk=1).first()
                ready.wait()
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        Item.objects.using("sf").filter(pk=1).first()
                    except Exception as exc:
                        with lock:
                            errors.append(type(exc).__name__)
                    with lock:
                        latencies.append((started, time.monotonic() - started))
                    stop.wait(REQUEST_INTERVAL)
            finally:
                connections["sf"].close()

        workers = [threading.Thread(target=reader) for _ in range(threads)]
        for worker in workers:
            worker.start()
        ready.wait()
        stop.wait(0.3)
        down_at = time.monotonic()
        cluster.endpoint.point_to(None)
        cluster.kill(cluster.primary)
        new = cluster.promote(cluster.standbys[0])
        stop.wait(max(0.0, down_at + outage - time.monotonic()))
        cluster.endpoint.point_to(new)
        up_at = time.monotonic()
        stop.wait(1.0)
        stop.set()
        for worker in workers:
            worker.join(30)
    longest = max(seconds for _, seconds in latencies)
    return {
        "outage_s": up_at - down_at,
        "reads": len(latencies),
        "errors": errors,
        "longest_s": longest,
        "extra_ms": round((longest - (up_at - down_at)) * 1000, 1),
    }


# --- 3. recovery lag ----------------------------------------------------------------


class _App:
    """Threads that each make a request every REQUEST_INTERVAL and record successes."""

    def __init__(self, alias: str, threads: int, close_after_request: bool) -> None:
        self.alias = alias
        self.close_after_request = close_after_request
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.successes: list[float] = []
        self.errors = 0
        self.workers = [threading.Thread(target=self._run) for _ in range(threads)]

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def _run(self) -> None:
        from django.db import connections

        from tests.testapp.models import Item

        connection = connections[self.alias]
        try:
            while not self.stop.is_set():
                try:
                    Item.objects.using(self.alias).filter(pk=1).first()
                except Exception:
                    with self.lock:
                        self.errors += 1
                else:
                    with self.lock:
                        self.successes.append(time.monotonic())
                finally:
                    if self.close_after_request:
                        connection.close()  # CONN_MAX_AGE=0: the request's end
                    else:
                        connection.close_if_unusable_or_obsolete()
                self.stop.wait(REQUEST_INTERVAL)
        finally:
            connection.close()

    def first_success_after(self, instant: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                after = [t for t in self.successes if t >= instant]
            if after:
                return min(after) - instant
            self.stop.wait(0.002)
        return None

    def close(self) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(30)


def bench_recovery_lag(
    cluster: Any, episodes: int, outage: float, resilience: dict[str, Any] | None = None
) -> dict[str, Any]:
    from django_pg_resilience.testing.django import database_alias

    _reset_state()
    endpoint = cluster.endpoint
    lags: dict[str, list[float]] = {"ours": [], "stock": []}
    missing = {"ours": 0, "stock": 0}
    with (
        database_alias("rl_ours", endpoint, engine=OURS, OPTIONS={"resilience": resilience or {}}),
        database_alias("rl_stock", endpoint, engine=STOCK, OPTIONS={"connect_timeout": 2}),
    ):
        apps = {"ours": _App("rl_ours", 2, True), "stock": _App("rl_stock", 2, True)}
        for app in apps.values():
            app.start()
        stop = threading.Event()
        stop.wait(0.3)
        for _ in range(episodes):
            endpoint.point_to(None)
            stop.wait(outage)
            endpoint.point_to(cluster.primary)
            up_at = time.monotonic()
            for name, app in apps.items():
                lag = app.first_success_after(up_at, timeout=10)
                if lag is None:
                    missing[name] += 1
                else:
                    lags[name].append(lag)
            stop.wait(0.2)
        for app in apps.values():
            app.close()
    result: dict[str, Any] = {"episodes": episodes, "outage_s": outage}
    for name, values in lags.items():
        result[f"{name}_p50_ms"] = round(_percentile(values, 0.5) * 1000, 1)
        result[f"{name}_p99_ms"] = round(_percentile(values, 0.99) * 1000, 1)
        result[f"{name}_max_ms"] = round(max(values) * 1000, 1) if values else None
        result[f"{name}_no_recovery"] = missing[name]
    result["target_p50_ms"] = 50
    result["target_p99_ms"] = 250
    return result


# --- 4. outage load ------------------------------------------------------------------


def bench_outage_load(
    cluster: Any,
    threads: int,
    outage: float,
    resilience: dict[str, Any] | None = None,
    engines: tuple[str, ...] = ("ours", "stock"),
) -> dict[str, Any]:
    from django_pg_resilience.testing.django import database_alias

    endpoint = cluster.endpoint
    result: dict[str, Any] = {"threads": threads, "outage_s": outage}
    for name in engines:
        engine = OURS if name == "ours" else STOCK
        _reset_state()
        attempts = _CountingConnects()
        options: dict[str, Any] = {"connect_timeout": 2}
        if engine == OURS:
            options = {"resilience": resilience or {}}
        with database_alias(f"ol_{name}", endpoint, engine=engine, OPTIONS=options):
            app = _App(f"ol_{name}", threads, close_after_request=True)
            app.start()
            threading.Event().wait(0.3)
            endpoint.point_to(None)
            down_at = time.monotonic()
            with attempts:
                threading.Event().wait(outage)
            endpoint.point_to(cluster.primary)
            app.close()
        counted = attempts.count
        windows = attempts.per_second(down_at, int(outage))
        result[f"{name}_attempts_per_s"] = round(counted / outage, 1)
        result[f"{name}_attempts_each_second"] = windows
        result[f"{name}_max_attempts_in_a_second_after_the_first"] = max(windows[1:], default=0)
        result[f"{name}_requests_failed"] = app.errors
    result["target_ours_max_attempts_in_a_second_after_the_first"] = 10
    return result


class _CountingConnects:
    """Counts psycopg connection attempts made by this process while active.

    Both ways in are wrapped: ``psycopg.connect`` (stock Django) and
    ``Connection.connect`` (this backend's ResilientConnection inherits it).
    """

    def __init__(self) -> None:
        self.count = 0
        #: time.monotonic() of each attempt.
        self.times: list[float] = []
        self._lock = threading.Lock()
        self._saved: tuple[Any, Any] | None = None

    def _bump(self) -> None:
        with self._lock:
            self.count += 1
            self.times.append(time.monotonic())

    def per_second(self, since: float, seconds: int) -> list[int]:
        """Attempts in each whole second after ``since``."""
        counts = [0] * seconds
        for at in self.times:
            index = int(at - since)
            if 0 <= index < seconds:
                counts[index] += 1
        return counts

    def __enter__(self) -> _CountingConnects:
        import psycopg

        module_connect = psycopg.connect
        class_connect = psycopg.Connection.__dict__["connect"]
        self._saved = (module_connect, class_connect)

        def counted_module(*args: Any, **kwargs: Any) -> Any:
            self._bump()
            return module_connect(*args, **kwargs)

        def counted_class(klass: Any, *args: Any, **kwargs: Any) -> Any:
            self._bump()
            return class_connect.__func__(klass, *args, **kwargs)

        psycopg.connect = counted_module  # type: ignore[assignment]
        psycopg.Connection.connect = classmethod(counted_class)  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc_info: object) -> None:
        import psycopg

        assert self._saved is not None
        psycopg.connect, psycopg.Connection.connect = self._saved  # type: ignore[method-assign]


# --- 5. the backoff_cap trade-off ----------------------------------------------------


#: The backoff caps compared (0.1 is the default).
TRADEOFF_CAPS = (0.05, 0.1, 0.15)


def bench_tradeoff(cluster: Any, caps: tuple[float, ...], quick: bool) -> dict[str, Any]:
    """Recovery lag, outage load and the short failover for each ``backoff_cap``.

    One probe per process at a time, waiting a uniform random time in
    ``[0, cap]`` between probes (full jitter): the cap bounds how late the end
    of an outage is noticed, and ``2 / cap`` is the attempt rate while an
    outage is held. Stock Django's recovery lag is measured in the same runs.
    """
    rows = []
    for cap in caps:
        resilience = {"backoff_cap": cap}
        lag = bench_recovery_lag(
            cluster, episodes=6 if quick else 15, outage=0.5, resilience=resilience
        )
        load = bench_outage_load(
            cluster,
            threads=16,
            outage=3.0 if quick else 10.0,
            resilience=resilience,
            engines=("ours",),
        )
        failover = bench_short_failover(16, 2.0, episodes=1 if quick else 3, resilience=resilience)
        rows.append(
            {
                "backoff_cap": cap,
                "recovery_lag_p50_ms": lag["ours_p50_ms"],
                "recovery_lag_p99_ms": lag["ours_p99_ms"],
                "stock_recovery_lag_p50_ms": lag["stock_p50_ms"],
                "stock_recovery_lag_p99_ms": lag["stock_p99_ms"],
                "outage_attempts_per_s": load["ours_attempts_per_s"],
                "short_failover_extra_ms_max": failover["longest_read_minus_outage_ms"],
                "short_failover_errors": failover["errors_to_callers"],
            }
        )
    return {"rows": rows}


# --- main ------------------------------------------------------------------------------


def _table(results: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, figures in results.items():
        if not isinstance(figures, dict):
            continue
        lines.append(section)
        if section == "tradeoff":
            lines.append(
                "  cap     lag p50/p99 ms   stock p50/p99 ms   attempts/s   2 s failover +ms"
            )
            for row in figures["rows"]:
                lag = f"{row['recovery_lag_p50_ms']:>6} /{row['recovery_lag_p99_ms']:>6}"
                stock = (
                    f"{row['stock_recovery_lag_p50_ms']:>6} /{row['stock_recovery_lag_p99_ms']:>6}"
                )
                load = f"{row['outage_attempts_per_s']:>10}"
                extra = f"{row['short_failover_extra_ms_max']:>10}"
                lines.append(f"  {row['backoff_cap']:<7} {lag}   {stock}   {load}   {extra}")
            continue
        for key, value in figures.items():
            lines.append(f"  {key:<36} {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmarks; print a table; save and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer queries, episodes, seconds")
    parser.add_argument(
        "--no-tradeoff", action="store_true", help="skip the backoff_cap trade-off table"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "")
    _setup_django()
    from django_pg_resilience.testing import LocalCluster

    quick = args.quick
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "quick": quick,
    }
    with LocalCluster(standbys=0) as cluster:
        results["happy_path"] = bench_happy_path(
            cluster, queries=6_000 if quick else 24_000, rounds=6 if quick else 24
        )
        results["recovery_lag"] = bench_recovery_lag(
            cluster, episodes=8 if quick else 30, outage=0.5
        )
        results["outage_load"] = bench_outage_load(
            cluster, threads=16, outage=3.0 if quick else 10.0
        )
        if not args.no_tradeoff:
            results["tradeoff"] = bench_tradeoff(cluster, TRADEOFF_CAPS, quick)
    results["short_failover"] = bench_short_failover(
        threads=16, outage=2.0, episodes=2 if quick else 8
    )
    print(_table(results))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {RESULTS.relative_to(ROOT)}")
    return results


if __name__ == "__main__":
    main()
