#!/usr/bin/env python3
"""Wall time of ``python -m django health``: ``python3 bench/bench_health.py [--quick]``.

A real primary + streaming standby (LocalCluster). Each run is a fresh process,
so Django's start-up is included, like cron or a monitoring agent would see it:

* ``healthy``: the primary as the default alias, the standby as a NODES entry;
* ``blackholed``: the same, plus a third node behind an EndpointProxy that
  accepts TCP and forwards nothing (a vanished host), ``--timeout 2``;
* ``startup``: ``python -m django check`` with the same settings, the floor
  any management command pays;
* ``endpoints``: gunicorn (2 workers, PROMETHEUS_MULTIPROC_DIR) with the
  blackholed node configured, 8 clients sending anonymous ``/readyz`` and
  ``/healthz/cluster`` requests: latency, and the probe connections all of
  them cost (``pg_resilience_health_probe_connections_total`` on /metrics).
* ``anonymous_loop``: the same gunicorn, healthy nodes, ``HEALTH_CACHE_SECONDS
  = 0`` (the worst setting) and the DigitalOcean check on a local server
  speaking the API: 1,000 anonymous GETs on each of ``/healthz/cluster``,
  ``/readyz`` and ``/metrics``; the probe rounds they cost
  (``pg_resilience_health_rounds_total``) and the API requests the server saw.

Prints min / median / max and writes ``bench/results/health.json``.
Targets: healthy < 1 s; blackholed < timeout + 0.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
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


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@contextlib.contextmanager
def gunicorn(env: dict[str, str]) -> Iterator[str]:
    """The test app under gunicorn (2 workers, PROMETHEUS_MULTIPROC_DIR); yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as multiproc:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
             "django.core.wsgi:get_wsgi_application()"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**env, "DJANGO_SETTINGS_MODULE": "tests.health.metrics_settings",
                 "PROMETHEUS_MULTIPROC_DIR": multiproc},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while _get_or_none(base + "/healthz") is None:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("gunicorn did not start")
                time.sleep(0.1)
            yield base
        finally:
            server.terminate()
            server.wait(30)


def endpoint_load(env: dict[str, str], requests: int = 400, clients: int = 8) -> dict[str, Any]:
    """Anonymous health requests against gunicorn: latencies and the probe connections made."""
    with gunicorn(env) as base:
        figures: dict[str, Any] = {
            path: _hammer(base + path, requests, clients)
            for path in ("/readyz", "/healthz/cluster")
        }
        figures["probe_connections"] = _counter(
            _get(base + "/metrics")[1], "health_probe_connections", "node"
        )
    figures["requests_per_path"] = requests
    figures["clients"] = clients
    return figures


def anonymous_loop(env: dict[str, str], requests: int = 1000, clients: int = 8) -> dict[str, Any]:
    """1,000 anonymous GETs per public URL, HEALTH_CACHE_SECONDS = 0, DigitalOcean on a local
    server: the probe rounds and the API requests they cost."""
    from tests.health.test_digitalocean import CLUSTER, TOKEN, FakeDigitalOcean

    api = FakeDigitalOcean()
    settings = {
        "HEALTH_CACHE_SECONDS": 0.0,
        "DIGITALOCEAN_CLUSTER": CLUSTER,
        "DIGITALOCEAN_API_URL": api.url,
    }
    env = {**env, "DIGITALOCEAN_TOKEN": TOKEN, "HEALTH_TEST_SETTINGS": json.dumps(settings)}
    figures: dict[str, Any] = {}
    try:
        with gunicorn(env) as base:
            for path in ("/healthz/cluster", "/readyz", "/metrics"):
                rounds_before = _rounds(base)
                asked_before = len(api.authorizations)
                load = _hammer(base + path, requests, clients)
                figures[path] = {
                    "elapsed_s": load["elapsed_s"],
                    "statuses": load["statuses"],
                    "latency_p50_ms": load["latency_p50_ms"],
                    # The scrape that reads the counter is a request to /metrics too.
                    "probe_rounds": _rounds(base) - rounds_before,
                    "digitalocean_requests": len(api.authorizations) - asked_before,
                }
    finally:
        api.close()
    figures["requests_per_path"] = requests
    figures["clients"] = clients
    figures["workers"] = 2
    return figures


def _rounds(base: str) -> float:
    return sum(_counter(_get(base + "/metrics")[1], "health_rounds", "trigger").values())


def _get_or_none(url: str) -> int | None:
    try:
        return _get(url)[0]
    except OSError:
        return None


def _hammer(url: str, requests: int, clients: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    started = time.perf_counter()

    def client() -> None:
        for _ in range(requests // clients):
            began = time.perf_counter()
            status, _body = _get(url)
            with lock:
                latencies.append(time.perf_counter() - began)
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "statuses": statuses,
        "elapsed_s": round(elapsed, 3),
        "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "latency_p95_ms": round(1000 * latencies[int(len(latencies) * 0.95)], 2),
        "latency_max_ms": round(1000 * latencies[-1], 2),
    }


def _counter(metrics: bytes, name: str, label: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        sample.labels[label]: sample.value
        for family in text_string_to_metric_families(metrics.decode())
        if family.name == f"pg_resilience_{name}"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


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
            "endpoints": endpoint_load(holed_env),
            "anonymous_loop": anonymous_loop(healthy_env),
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
    load = results["endpoints"]
    print(
        f"  gunicorn, 2 workers, blackholed node configured, {load['clients']} clients, "
        f"{load['requests_per_path']} anonymous requests per path:"
    )
    for path in ("/readyz", "/healthz/cluster"):
        r = load[path]
        print(
            f"    {path:<17} p50 {r['latency_p50_ms']:.1f} ms  p95 {r['latency_p95_ms']:.1f} ms  "
            f"max {r['latency_max_ms']:.1f} ms  statuses {r['statuses']}"
        )
    print(f"    probe connections for all of them, per node: {load['probe_connections']}")
    loop = results["anonymous_loop"]
    print(
        f"  gunicorn, 2 workers, HEALTH_CACHE_SECONDS = 0, DigitalOcean on a local server, "
        f"{loop['clients']} clients, {loop['requests_per_path']} anonymous GETs per path:"
    )
    for path in ("/healthz/cluster", "/readyz", "/metrics"):
        r = loop[path]
        print(
            f"    {path:<17} {r['elapsed_s']:.1f} s: {r['probe_rounds']:g} probe rounds, "
            f"{r['digitalocean_requests']} DigitalOcean API requests"
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
