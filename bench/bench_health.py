#!/usr/bin/env python3
"""Wall time of ``python -m django health``: ``python3 bench/bench_health.py [--quick]``.

A real primary + streaming standby (LocalCluster). Each run is a fresh process,
so Django's start-up is included, like cron or a monitoring agent would see it:

* ``healthy``: the primary as the default alias, the standby as a NODES entry;
* ``blackholed``: the same, plus a third node behind an EndpointProxy that
  accepts TCP and forwards nothing (a vanished host), ``--timeout 2``;
* ``startup``: ``python -m django check`` with the same settings, the floor
  any management command pays.

Prints min / median / max and writes ``bench/results/health.json``.
Targets: healthy < 1 s; blackholed < timeout + 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "health.json"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TIMEOUT = 2.0
TARGET_HEALTHY = 1.0
TARGET_BLACKHOLED = TIMEOUT + 0.5


def node_entry(address: Any) -> dict[str, str]:
    return {"HOST": address.host, "PORT": str(address.port), "USER": "postgres", "NAME": "postgres"}


def time_runs(command: list[str], env: dict[str, str], runs: int, expect: int) -> dict[str, Any]:
    seconds: list[float] = []
    rounds: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        seconds.append(time.perf_counter() - started)
        if done.returncode != expect:
            raise RuntimeError(
                f"{' '.join(command[3:])} exited {done.returncode}, expected {expect}:\n"
                f"{done.stdout[-1500:]}{done.stderr[-1500:]}"
            )
        if "--format" in command:  # the report's own timing: probes + evaluation only
            rounds.append(json.loads(done.stdout)["duration_seconds"])
    figures: dict[str, Any] = {
        "runs": runs,
        "wall_min_s": round(min(seconds), 3),
        "wall_median_s": round(statistics.median(seconds), 3),
        "wall_max_s": round(max(seconds), 3),
    }
    if rounds:
        figures["check_round_median_s"] = round(statistics.median(rounds), 4)
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per scenario instead of 10")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else 10

    from django_pg_resilience.testing import EndpointProxy, LocalCluster

    health = [
        sys.executable,
        "-m",
        "django",
        "health",
        "--settings=tests.health.subprocess_settings",
        "--format",
        "json",
    ]
    with LocalCluster(standbys=1) as cluster, EndpointProxy(cluster.standbys[0]) as hole:
        hole.blackhole()
        base_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HEALTH_TEST_HOST": cluster.primary.host,
            "HEALTH_TEST_PORT": str(cluster.primary.port),
        }
        healthy_env = {
            **base_env,
            "HEALTH_TEST_NODES": json.dumps({"replica": node_entry(cluster.standbys[0])}),
        }
        holed_env = {
            **base_env,
            "HEALTH_TEST_NODES": json.dumps(
                {"replica": node_entry(cluster.standbys[0]), "vanished": node_entry(hole)}
            ),
        }
        check = [
            sys.executable,
            "-m",
            "django",
            "check",
            "--settings=tests.health.subprocess_settings",
        ]
        results: dict[str, Any] = {
            "startup": time_runs(check, healthy_env, runs, expect=0),
            "healthy": time_runs(health, healthy_env, runs, expect=0),
            "blackholed": time_runs(
                [*health, "--timeout", str(TIMEOUT)], holed_env, runs, expect=1
            ),
        }
    results["timeout_s"] = TIMEOUT
    results["targets"] = {"healthy_s": TARGET_HEALTHY, "blackholed_s": TARGET_BLACKHOLED}
    results["meets_target"] = {
        "healthy": results["healthy"]["wall_median_s"] < TARGET_HEALTHY,
        "blackholed": results["blackholed"]["wall_median_s"] < TARGET_BLACKHOLED,
    }
    results["machine"] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    print(f"manage.py health, {runs} runs each (fresh process, Django start-up included)")
    for name, label in (
        ("startup", "django check (start-up floor)"),
        ("healthy", "healthy primary + standby"),
        ("blackholed", f"+ blackholed node, --timeout {TIMEOUT:g}"),
    ):
        r = results[name]
        in_report = r.get("check_round_median_s")
        print(
            f"  {label:<38} median {r['wall_median_s']:.3f} s  "
            f"(min {r['wall_min_s']:.3f}, max {r['wall_max_s']:.3f})"
            + ("" if in_report is None else f"; checks alone {in_report:.3f} s")
        )
    verdicts = results["meets_target"]
    print(
        f"  targets: healthy < {TARGET_HEALTHY:g} s: {'met' if verdicts['healthy'] else 'MISSED'}; "
        f"blackholed < {TARGET_BLACKHOLED:g} s: {'met' if verdicts['blackholed'] else 'MISSED'}"
    )
    print(f"  saved {RESULTS.relative_to(ROOT)}")
    return results


if __name__ == "__main__":
    main()
