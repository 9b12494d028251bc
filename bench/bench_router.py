#!/usr/bin/env python3
"""What the replica router costs: ``python3 bench/bench_router.py [--quick]``.

A real primary + streaming standby (LocalCluster), the router in this process:

* ``route_to_replica_us``: one ``db_for_read`` that picks the replica (the
  request path: a cache lookup, no query);
* ``route_fallback_us``: one that falls back to the primary (the replica has
  not replayed the client's position);
* ``route_dead_replica_us``: one after the replica died and a probe found it
  (its breaker is open: no connect, no wait);
* ``position_read_ms``: reading the primary's WAL position after a write (one
  round trip, once per writing request);
* ``probe_round_ms``: one background measurement (primary + replica);
* ``silent_neighbour_healthy_measured_ms``: with a second replica that accepts
  connections and never answers (a blackholed EndpointProxy) listed first,
  how soon the healthy replica is measured after a refresh starts (the
  replicas are measured in parallel), and ``silent_neighbour_refresh_s``, the
  whole refresh (the silent one's connect timeout).

Prints the figures and writes ``bench/results/router.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "router.json"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def per_call(fn: Callable[[], object], calls: int, batches: int) -> float:
    """Median over ``batches`` of the mean time of one call, in seconds."""
    means = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - started) / calls)
    return statistics.median(means)


def configure(primary: Any, standby: Any, silent: Any) -> None:
    import django
    from django.conf import settings

    def entry(node: Any, **resilience: Any) -> dict[str, Any]:
        return {
            "ENGINE": "django_pg_resilience.backend",
            "NAME": "postgres",
            "USER": "postgres",
            "HOST": node.host,
            "PORT": str(node.port),
            "OPTIONS": {"resilience": resilience} if resilience else {},
        }

    settings.configure(
        INSTALLED_APPS=["django_pg_resilience"],
        DATABASES={
            "default": entry(primary),
            "replica": entry(standby, read_write=False, deadline=0.3, max_attempts=1),
            "silent": entry(silent, read_write=False, deadline=0.3, max_attempts=1),
        },
        DATABASE_ROUTERS=["django_pg_resilience.routers.ReplicaRouter"],
        # The benchmark measures when it wants to: no background refresh meanwhile.
        # The silent replica is measured by a monitor of its own (silent_neighbour()).
        PG_RESILIENCE={"REPLICA_CHECK_INTERVAL": 3600.0, "REPLICA_ALIASES": ["replica"]},
        USE_TZ=True,
    )
    django.setup()


def silent_neighbour() -> dict[str, float]:
    """A refresh of a silent replica listed before a healthy one: when is the healthy one in?"""
    import threading

    from django_pg_resilience.routers.monitor import ReplicaMonitor

    monitor = ReplicaMonitor("default", ["silent", "replica"], interval=3600.0, timeout=0.5)
    started = time.perf_counter()
    refresh = threading.Thread(target=monitor.refresh, daemon=True)
    refresh.start()
    while monitor.status("replica") is None and refresh.is_alive():
        time.sleep(0.001)
    healthy = time.perf_counter() - started
    refresh.join()
    whole = time.perf_counter() - started
    healthy_status, silent_status = monitor.status("replica"), monitor.status("silent")
    if (
        healthy_status is None
        or healthy_status.error
        or not silent_status
        or not silent_status.error
    ):
        raise RuntimeError("the replicas were not measured as expected")
    monitor.close()
    return {
        "silent_neighbour_healthy_measured_ms": round(healthy * 1e3, 1),
        "silent_neighbour_refresh_s": round(whole, 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls per figure")
    args = parser.parse_args(argv)
    calls, batches = (2_000, 3) if args.quick else (20_000, 7)

    from django_pg_resilience.testing import EndpointProxy, LocalCluster

    with LocalCluster(standbys=1) as cluster, EndpointProxy(cluster.standbys[0]) as silent:
        silent.blackhole()
        configure(cluster.primary, cluster.standbys[0], silent)
        from django.db import connections

        from django_pg_resilience.routers import ReplicaRouter
        from django_pg_resilience.routers.config import replica_monitor
        from django_pg_resilience.routers.context import RoutingState, routing_state
        from django_pg_resilience.routers.router import primary_position

        router = ReplicaRouter()
        monitor = replica_monitor()
        monitor.refresh()
        if router.db_for_read(None) != "replica":
            raise RuntimeError("the replica does not serve reads; the figures would be wrong")
        results: dict[str, Any] = {
            "machine": {"python": platform.python_version(), "arch": platform.machine()},
            "calls": calls,
            "batches": batches,
        }
        results["route_to_replica_us"] = round(
            per_call(lambda: router.db_for_read(None), calls, batches) * 1e6, 2
        )
        with routing_state(RoutingState(required_position=2**63)):
            results["route_fallback_us"] = round(
                per_call(lambda: router.db_for_read(None), calls, batches) * 1e6, 2
            )
        primary_position("default")
        results["position_read_ms"] = round(
            per_call(lambda: primary_position("default"), calls // 20, batches) * 1e3, 3
        )
        results["probe_round_ms"] = round(
            per_call(monitor.refresh, max(calls // 400, 5), batches) * 1e3, 2
        )
        results.update(silent_neighbour())
        cluster.kill(cluster.standbys[0])
        monitor.refresh()
        if router.db_for_read(None) != "default":
            raise RuntimeError("a dead replica still gets reads")
        results["route_dead_replica_us"] = round(
            per_call(lambda: router.db_for_read(None), calls, batches) * 1e6, 2
        )
        monitor.close()
        connections.close_all()

    for name, value in results.items():
        if name != "machine":
            print(f"{name:24} {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {RESULTS}")
    return results


if __name__ == "__main__":
    main()
