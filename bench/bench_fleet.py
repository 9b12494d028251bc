#!/usr/bin/env python3
"""Busy is not down: a fleet meeting a full new primary. ``python3 bench/bench_fleet.py``.

``--part NAME`` (repeatable) runs some parts only; each part's figures are saved under its
key in ``bench/results/fleet.json`` (a part not run keeps its last figures). ``--quick``
runs fewer repetitions.

* ``squeeze``: the example shop on gunicorn (gthread, 2 processes x 4 threads), storefront
  readers and Shopify-signed orders (the drill's traffic, 4 + 4 clients), nodes of 20
  client slots. The primary is crashed, the standby promoted, and when the endpoint moves
  only 3 of the new primary's slots are free for 4 s (the others held by connections of
  ours), then freed. Requests/s in the 5 s before the fault and during the hold (target:
  >= 50 % with ``CONN_MAX_AGE=60``), the slowest answer (target: within the deadline + 1 s),
  500s, 503s, and whether the breaker opened after the move (target: never). With
  ``CONN_MAX_AGE=60`` and, for comparison, 0.
* ``fleet``: ``--workers`` gunicorn processes x 4 threads of the shop (16 by default)
  against nodes of 30 client slots (``max_connections``), ``CONN_MAX_AGE=0``, 32 clients;
  crash, promotion 2 s later, move; django-pg-resilience and stock Django side by side.
  Connection attempts a second at the endpoint (every TCP connection it accepts is one),
  "too many clients" (53300) in the new primary's log, the time until every process
  served a 200 again, 500s and 503s, the most attempts each process made at once.
* ``simulated``: bench/fleet_model.py: 1,000 and 10,000 processes against a model node
  (200 slots, 200 connections/s), the package's own breaker, backoff and budget with
  injected time; stock Django beside it; and models of changes to the package.
* ``drill``: the README's crash drill with ``--conn-max-age 60``, 20 runs in a row (target:
  0 x 500 in every run).

Benchmarks are not run by CI. Prints a table per part and writes ``bench/results/fleet.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results" / "fleet.json"
for _path in (ROOT, BENCH):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import psycopg  # noqa: E402

from django_pg_resilience.testing import Node  # noqa: E402
from example_project.drill.stack import WEBHOOK_SECRET, Stack  # noqa: E402
from example_project.drill.traffic import Traffic, TrafficConfig  # noqa: E402

PARTS = ("squeeze", "fleet", "simulated", "drill")
DEADLINE = 4.0  # the backend's default deadline
BREAKER_OPENED = "Circuit breaker for database 'default' opened"
BUSY_EPISODE = "connection slots exhausted"


# --- shared ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


class Run:
    """The drill's traffic against a Stack, in a thread of this process."""

    def __init__(self, stack: Stack, readers: int, senders: int, seconds: float, work: Path):
        self.started = time.monotonic()
        config = TrafficConfig(
            host="127.0.0.1",
            port=stack.port,
            secret=WEBHOOK_SECRET,
            readers=readers,
            senders=senders,
            stop_at=self.started + seconds,
            drain_until=self.started + seconds + 10.0,
            results_path=str(work / "traffic.json"),
        )
        self.result: dict[str, Any] = {}
        self.thread = threading.Thread(
            target=lambda: self.result.update(Traffic(config).run()), daemon=True
        )
        self.thread.start()

    def wait(self) -> list[dict[str, Any]]:
        self.thread.join(300)
        if self.thread.is_alive() or not self.result:
            raise RuntimeError("the traffic did not finish")
        attempts: list[dict[str, Any]] = self.result["attempts"]
        return attempts


def log_since(path: Path, offset: int) -> str:
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read().decode(errors="replace")


def too_many_clients(node: Node, offset: int) -> int:
    """FATAL "too many clients" lines the node logged since ``offset``."""
    return log_since(node.log_file, offset).count("too many clients")


def rate(attempts: list[dict[str, Any]], start: float, end: float) -> float:
    served = sum(1 for a in attempts if start <= a["end"] < end and 200 <= a["status"] < 300)
    return served / max(end - start, 1e-9)


def statuses(attempts: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(a["status"] for a in attempts)
    return {str(status): counts[status] for status in sorted(counts)}


def save(part: str, figures: dict[str, Any]) -> None:
    results: dict[str, Any] = {}
    if RESULTS.exists():
        results = json.loads(RESULTS.read_text())
    results[part] = figures
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


# --- squeeze: 3 free slots for 4 s after the move ----------------------------------------

SQUEEZE_NODES = {"max_connections": "20", "max_wal_senders": "4"}
FREE_SLOTS = 3
HOLD = 4.0
BEFORE_FAULT = 8.0


def fill_all_but(node: Node, free: int) -> list[psycopg.Connection[Any]]:
    held: list[psycopg.Connection[Any]] = []
    while True:
        try:
            held.append(node.connect())
        except psycopg.OperationalError as exc:
            if "too many clients" not in str(exc):
                raise
            break
    for connection in held[-free:]:
        connection.close()
    return held[:-free]


def squeeze_once(conn_max_age: int, work: Path, what_if: str = "") -> dict[str, Any]:
    os.environ.pop("FLEET_REPORT_DIR", None)
    deadline = what_if.removeprefix("deadline=") if what_if.startswith("deadline=") else ""
    os.environ["FLEET_WHAT_IF"] = what_if
    os.environ["FLEET_DEADLINE"] = deadline
    stack = Stack(
        workers=2,
        threads=4,
        conn_max_age=conn_max_age,
        server_settings=SQUEEZE_NODES,
        server_log=work / "server.log",
        gunicorn_config=BENCH / "fleet_gunicorn.conf.py",
    )
    with stack:
        cluster = stack.start_cluster()
        stack.migrate_and_seed()
        stack.start_server()
        run = Run(stack, readers=4, senders=4, seconds=BEFORE_FAULT + 14.0, work=work)
        time.sleep(max(run.started + BEFORE_FAULT - time.monotonic(), 0))
        old, standby = cluster.primary, cluster.standbys[0]
        fault = time.monotonic()
        cluster.kill(old)
        new = cluster.promote(standby)
        held = fill_all_but(new, FREE_SLOTS)
        try:
            log_offset = stack.server_log.stat().st_size
            node_offset = new.log_file.stat().st_size
            stack.endpoint.point_to(new)
            moved = time.monotonic()
            time.sleep(HOLD)
        finally:
            for connection in held:
                connection.close()
        freed = time.monotonic()
        attempts = run.wait()
        server_log = log_since(stack.server_log, log_offset)
        refusals = too_many_clients(new, node_offset)
    answered = [a for a in attempts if a["status"] in (200, 503)]
    slowest = max((a["end"] - a["start"] for a in answered), default=0.0)
    limit = float(os.environ["FLEET_DEADLINE"] or DEADLINE) + 1.0
    before = rate(attempts, fault - 5.0, fault)
    during = rate(attempts, moved, freed)
    return {
        "conn_max_age": conn_max_age,
        "what_if": what_if or None,
        "requests": len(attempts),
        "by_status": statuses(attempts),
        "requests_per_s_before_fault": round(before, 1),
        "requests_per_s_during_hold": round(during, 1),
        "hold_over_before": round(during / before, 3) if before else None,
        "requests_per_s_after_hold": round(rate(attempts, freed, freed + 4.0), 1),
        "promotion_s": round(moved - fault, 2),
        "slowest_answer_s": round(slowest, 3),
        "answered_within_deadline_plus_1s": slowest <= limit,
        "no_answer": sum(1 for a in attempts if a["status"] == 0),
        "503_during_hold": sum(
            1 for a in attempts if moved <= a["end"] < freed + DEADLINE and a["status"] == 503
        ),
        "too_many_clients_at_new_primary": refusals,
        "breaker_opened_after_move": server_log.count(BREAKER_OPENED),
        "busy_episodes_logged_after_move": server_log.count(BUSY_EPISODE),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


#: (label, CONN_MAX_AGE, what_if): the package as is, and a model of a change to it.
SQUEEZE_VARIANTS = (
    ("conn_max_age_60", 60, ""),
    ("conn_max_age_0", 0, ""),
    ("conn_max_age_60_release_when_busy", 60, "release_when_busy"),
    ("conn_max_age_60_deadline_1s", 60, "deadline=1.0"),
)


def part_squeeze(runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "runs": []}
    for label, conn_max_age, what_if in SQUEEZE_VARIANTS:
        for number in range(runs):
            with tempfile.TemporaryDirectory(prefix="fleet-squeeze-") as work:
                figures = squeeze_once(conn_max_age, Path(work), what_if)
            figures["run"] = number + 1
            figures["variant"] = label
            results["runs"].append(figures)
            print(
                f"  {label:<34} run {number + 1}: "
                f"{figures['requests_per_s_before_fault']:6.1f} req/s before, "
                f"{figures['requests_per_s_during_hold']:6.1f} during the hold "
                f"({figures['hold_over_before']}); statuses {figures['by_status']}; "
                f"slowest {figures['slowest_answer_s']} s; "
                f"53300 x {figures['too_many_clients_at_new_primary']}; "
                f"breaker opened x {figures['breaker_opened_after_move']}",
                flush=True,
            )
    for label, _, _ in SQUEEZE_VARIANTS:
        mine = [r for r in results["runs"] if r["variant"] == label]
        results[label] = {
            "runs": len(mine),
            "hold_over_before_min": min((r["hold_over_before"] or 0) for r in mine),
            "hold_over_before_median": sorted(r["hold_over_before"] or 0 for r in mine)[
                len(mine) // 2
            ],
            "500s": sum(r["by_status"].get("500", 0) for r in mine),
            "503s": sum(r["by_status"].get("503", 0) for r in mine),
            "no_answer": sum(r["no_answer"] for r in mine),
            "slowest_answer_s": max(r["slowest_answer_s"] for r in mine),
            "breaker_opened_after_move": sum(r["breaker_opened_after_move"] for r in mine),
            "busy_lines_logged_after_move_max": max(
                r["busy_episodes_logged_after_move"] for r in mine
            ),
        }
    return results


# --- fleet: N processes against 30 slots ----------------------------------------------------

FLEET_NODES = {"max_connections": "30", "max_wal_senders": "4"}
WARM = 8.0
PROMOTION_DELAY = 2.0
AFTER_MOVE = 15.0
#: At the move, the rest of the fleet holds all but this many slots of the new primary ...
FLEET_FREE_SLOTS = 6
#: ... for this long.
FLEET_HOLD = 4.0


class Sampler:
    """The endpoint's accepted-connection counter, every 50 ms."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        endpoint = self.stack.endpoint
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), endpoint.accepted))
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def count_at(self, when: float) -> int:
        before = [count for t, count in self.samples if t <= when]
        return before[-1] if before else 0

    def per_window(self, start: float, seconds: int, window: float = 1.0) -> list[int]:
        return [
            self.count_at(start + (i + 1) * window) - self.count_at(start + i * window)
            for i in range(int(seconds / window))
        ]


def worker_requests(report_dir: Path) -> dict[str, list[tuple[float, int]]]:
    served: dict[str, list[tuple[float, int]]] = {}
    for path in report_dir.glob("requests-*.log"):
        rows = []
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                when, status = line.split()
                rows.append((float(when), int(status)))
        served[path.stem.split("-", 1)[1]] = rows
    return served


def fleet_once(
    engine: str, workers: int, threads: int, conn_max_age: int, clients: int, work: Path
) -> dict[str, Any]:
    os.environ["FLEET_WHAT_IF"] = os.environ["FLEET_DEADLINE"] = ""
    report_dir = work / "workers"
    report_dir.mkdir()
    os.environ["FLEET_REPORT_DIR"] = str(report_dir)
    stack = Stack(
        engine=engine,
        workers=workers,
        threads=threads,
        conn_max_age=conn_max_age,
        server_settings=FLEET_NODES,
        server_log=work / "server.log",
        gunicorn_config=BENCH / "fleet_gunicorn.conf.py",
    )
    with stack:
        cluster = stack.start_cluster()
        stack.migrate_and_seed()
        stack.start_server(timeout=180)
        sampler = Sampler(stack)
        readers = clients // 2
        run = Run(stack, readers, clients - readers, WARM + PROMOTION_DELAY + AFTER_MOVE, work)
        time.sleep(max(run.started + WARM - time.monotonic(), 0))
        old, standby = cluster.primary, cluster.standbys[0]
        fault = time.monotonic()
        cluster.kill(old)
        time.sleep(max(fault + PROMOTION_DELAY - time.monotonic(), 0))
        new = cluster.promote(standby)
        held = fill_all_but(new, FLEET_FREE_SLOTS)
        try:
            log_offset = stack.server_log.stat().st_size
            node_offset = new.log_file.stat().st_size
            stack.endpoint.point_to(new)
            moved = time.monotonic()
            time.sleep(FLEET_HOLD)
        finally:
            for connection in held:
                connection.close()
        freed = time.monotonic()
        attempts = run.wait()
        sampler.stop()
        refusals = too_many_clients(new, node_offset)
        server_log = log_since(stack.server_log, log_offset)
        stack.stop_server()  # the workers write their reports as they exit
    per_worker = worker_requests(report_dir)
    reports = [json.loads(p.read_text()) for p in report_dir.glob("worker-*.json")]
    served_before = {
        pid for pid, rows in per_worker.items() if any(t < fault and s == 200 for t, s in rows)
    }
    back_at = {
        pid: min((t - moved for t, s in rows if t >= moved and s == 200), default=None)
        for pid, rows in per_worker.items()
        if pid in served_before
    }
    never_back = sorted(pid for pid, t in back_at.items() if t is None)
    # A process serving through the hold is back at once; the others when they first serve.
    after_freed = {
        pid: min((t - freed for t, s in rows if t >= freed and s == 200), default=None)
        for pid, rows in per_worker.items()
        if pid in served_before
    }
    back_after_freed = [
        0.0 if (back_at[pid] is not None and back_at[pid] <= freed - moved) else after_freed[pid]
        for pid in back_at
    ]
    attempts_after = sampler.per_window(moved, 10)
    outage_attempts = sampler.count_at(moved) - sampler.count_at(fault)
    outage_windows = sampler.per_window(fault, int(moved - fault))
    peaks = [
        r["peak_concurrent_attempts"] for r in reports if r["peak_concurrent_attempts"] is not None
    ]
    window = [a for a in attempts if fault <= a["end"] < freed + 10.0]
    answered = [a for a in attempts if a["status"] in (200, 503)]
    unanswered = Counter(a["kind"] for a in attempts if a["status"] == 0)
    return {
        "engine": engine,
        "processes": workers,
        "threads": threads,
        "conn_max_age": conn_max_age,
        "clients": clients,
        "requests": len(attempts),
        "by_status": statuses(attempts),
        "by_status_fault_to_freed_plus_10s": statuses(window),
        "requests_per_s_before_fault": round(rate(attempts, fault - 5.0, fault), 1),
        "requests_per_s_during_hold": round(rate(attempts, moved, freed), 1),
        "slowest_answer_s": round(max((a["end"] - a["start"] for a in answered), default=0), 3),
        "answers_slower_than_deadline_plus_1s": sum(
            1 for a in answered if a["end"] - a["start"] > DEADLINE + 1.0
        ),
        # Shopify's sender gives up after 5 s, a reader after 15 s: "no answer" to the client.
        "no_answer_by_kind": dict(unanswered),
        "promotion_s": round(moved - fault, 2),
        "attempts_per_s_at_new_primary": attempts_after,
        "peak_attempts_per_s_at_new_primary": max(attempts_after, default=0),
        "peak_attempts_per_100ms_at_new_primary": max(sampler.per_window(moved, 5, 0.1), default=0),
        "attempts_per_s_in_outage": round(outage_attempts / max(moved - fault, 1e-9), 1),
        "attempts_per_s_per_process_in_outage": round(
            outage_attempts / max(moved - fault, 1e-9) / workers, 2
        ),
        "attempts_per_s_per_process_in_outage_by_second": [
            round(count / workers, 2) for count in outage_windows
        ],
        "free_slots_during_hold": FLEET_FREE_SLOTS,
        "hold_s": round(freed - moved, 2),
        "too_many_clients_at_new_primary": refusals,
        "processes_serving_before": len(served_before),
        "every_process_served_again_s": None
        if never_back or not back_at
        else round(max(back_at.values()), 3),
        "processes_not_back": len(never_back),
        "every_process_served_within_s_of_slots_free": (
            None
            if any(t is None for t in back_after_freed)
            else round(max(back_after_freed, default=0.0), 3)
        ),
        "processes_serving_during_hold": sum(
            1 for t in back_at.values() if t is not None and t <= freed - moved
        ),
        "median_process_back_s": (
            round(sorted(t for t in back_at.values() if t is not None)[len(back_at) // 2], 3)
            if back_at and not never_back
            else None
        ),
        "worker_reports": len(reports),
        "peak_concurrent_attempts_per_process": max(peaks, default=None),
        "sum_of_per_process_peaks": sum(peaks) if peaks else None,
        "budget_bound": (workers * reports[0]["connect_concurrency"]) if peaks else None,
        "busy_errors": sum(r["stats"].get("busy_errors", 0) for r in reports),
        "breaker_opened": sum(r["stats"].get("breaker_opened", 0) for r in reports),
        "breaker_opened_after_move_log_lines": server_log.count(BREAKER_OPENED),
        "connect_attempts_counted_by_the_backend": sum(
            r["stats"].get("connect_attempts", 0) for r in reports
        ),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def part_fleet(workers: int, threads: int, clients: int, runs: int) -> dict[str, Any]:
    """More threads than slots: a connection per request. As many threads as slots: persistent."""
    variants = ((workers, threads, 0), (30 // threads, threads, 60))
    results: dict[str, Any] = {"machine": machine(), "runs": []}
    for processes, per_process, conn_max_age in variants:
        for number in range(runs):
            for engine in ("resilient", "stock"):
                with tempfile.TemporaryDirectory(prefix="fleet-") as work:
                    figures = fleet_once(
                        engine, processes, per_process, conn_max_age, clients, Path(work)
                    )
                figures["run"] = number + 1
                results["runs"].append(figures)
                print(
                    f"  {processes} x {per_process} CONN_MAX_AGE={conn_max_age} "
                    f"{engine:<9} run {number + 1}: {figures['by_status']}; attempts/s at the new "
                    f"primary {figures['attempts_per_s_at_new_primary'][:5]}; 53300 x "
                    f"{figures['too_many_clients_at_new_primary']}; every process back "
                    f"{figures['every_process_served_within_s_of_slots_free']} s after the slots "
                    f"were freed; peak attempts per process "
                    f"{figures['peak_concurrent_attempts_per_process']}",
                    flush=True,
                )
    return results


# --- simulated -----------------------------------------------------------------------------


def part_simulated(quick: bool) -> dict[str, Any]:
    from fleet_model import FleetModel, NodeModel, simulate

    from django_pg_resilience.conf import BackendSettings

    node = NodeModel()
    proposal = {
        "what_if": frozenset({"startup_timeouts_are_busy"}),
        "settings": BackendSettings(busy_backoff_cap=4.0),
    }
    before = {"what_if": frozenset({"per_caller_busy_backoff"})}
    results: dict[str, Any] = {
        "node": dataclasses.asdict(node),
        "fleet": {
            k: v
            for k, v in dataclasses.asdict(FleetModel()).items()
            if k not in ("settings", "what_if", "processes", "outage", "herd", "engine")
        },
        "proposal": {
            "what_if": sorted(proposal["what_if"]),
            "settings": {"busy_backoff_cap": 4.0},
        },
        "before": {"what_if": sorted(before["what_if"])},
        "runs": [],
    }
    # How much of the herd's collapse is the node model's: refusals and abandoned
    # start-ups that cost the node nothing.
    for label, cheaper in (
        ("refusals free", {"refuse_cost": 0.0}),
        ("abandoned free", {"abandoned_cost": 0.0}),
        ("both free", {"refuse_cost": 0.0, "abandoned_cost": 0.0}),
    ):
        cheap_node = dataclasses.replace(node, **cheaper)
        figures = simulate(FleetModel(processes=1000, outage=2.0, herd=True), cheap_node)
        figures.update(variant=f"package, {label}", workload="herd", node_changes=cheaper)
        results["runs"].append(figures)
        print(
            f"    1000 processes, outage  2.0 s, herd    package ({label}): full service after "
            f"{figures['full_service_after_move_s']} s; {figures['by_status']}; breaker opened "
            f"after the move x {figures['breaker_openings_after_move']}",
            flush=True,
        )
    sizes = (1000,) if quick else (1000, 10000)
    for processes in sizes:
        for outage in (2.0, 10.0):
            for herd in (False, True):
                variants: list[tuple[str, dict[str, Any]]] = [
                    ("package", {}),
                    ("stock", {"engine": "stock"}),
                ]
                if herd:
                    variants.append(("per-caller", before))  # the busy backoff before
                    variants.append(("proposal", proposal))
                for label, changes in variants:
                    model = FleetModel(processes=processes, outage=outage, herd=herd, **changes)
                    started = time.monotonic()
                    figures = simulate(model, node)
                    figures.update(
                        variant=label,
                        workload="herd" if herd else "traffic",
                        floor_one_connection_per_process_s=round(processes / node.accept_rate, 2),
                        seconds_to_simulate=round(time.monotonic() - started, 1),
                    )
                    results["runs"].append(figures)
                    print(
                        f"  {processes:>6} processes, outage {outage:>4} s, "
                        f"{figures['workload']:<7} {label:<8}: full service after "
                        f"{figures['full_service_after_move_s']} s, every process ready "
                        f"{figures['every_process_ready_s']} s; "
                        f"peak {figures['peak_attempts_per_s']} attempts/s; "
                        f"{figures['by_status']}; breaker opened after the move x "
                        f"{figures['breaker_openings_after_move']}",
                        flush=True,
                    )
    return results


# --- drill x 20 ------------------------------------------------------------------------------


def part_drill(runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "conn_max_age": 60, "runs": []}
    with tempfile.TemporaryDirectory(prefix="fleet-drill-") as work:
        for number in range(runs):
            report = Path(work) / f"drill-{number}.json"
            started = time.monotonic()
            completed = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "example_project.drill",
                    "--scenario",
                    "crash",
                    "--conn-max-age",
                    "60",
                    "--quiet",
                    "--json",
                    str(report),
                    "--server-log",
                    str(Path(work) / f"server-{number}.log"),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=900,
            )
            if not report.exists():
                figures: dict[str, Any] = {
                    "run": number + 1,
                    "exit_code": completed.returncode,
                    "error": completed.stderr.strip()[-500:],
                }
            else:
                summary = json.loads(report.read_text())
                figures = {
                    "run": number + 1,
                    "exit_code": completed.returncode,
                    "ok": summary["ok"],
                    "by_status": summary["requests"]["by_status"],
                    "orders_lost": summary["orders"]["lost"],
                    "lost_order_ids": summary["orders"]["lost_order_ids"],
                    "orders_duplicated": summary["orders"]["duplicated"],
                    "storefront_errors": summary["storefront"]["errors"],
                    "recovery_lag_s": summary["requests"]["recovery_lag"],
                    "seconds": round(time.monotonic() - started, 1),
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                }
            results["runs"].append(figures)
            if completed.returncode != 0:  # kept for a look: out/ is not committed
                kept = ROOT / "out" / "fleet-drill"
                kept.mkdir(parents=True, exist_ok=True)
                for name in (report.name, f"server-{number}.log"):
                    with contextlib.suppress(OSError):
                        (kept / name).write_bytes((Path(work) / name).read_bytes())
            print(f"  drill run {number + 1}: {figures}", flush=True)
    done = [r for r in results["runs"] if "by_status" in r]
    results["summary"] = {
        "runs": len(results["runs"]),
        "runs_completed": len(done),
        "runs_with_a_500": sum(1 for r in done if r["by_status"]["500"]),
        "500s": sum(r["by_status"]["500"] for r in done),
        "503s": sum(r["by_status"]["503"] for r in done),
        "all_ok": len(done) == runs and all(r["ok"] for r in done),
    }
    return results


# --- main ----------------------------------------------------------------------------------


@contextlib.contextmanager
def timed(name: str) -> Iterator[None]:
    started = time.monotonic()
    print(f"{name} (load average {os.getloadavg()[0]:.2f}) ...", flush=True)
    yield
    print(f"{name}: {time.monotonic() - started:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", action="append", choices=PARTS, help="run only these parts")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--workers", type=int, default=16, help="fleet: gunicorn processes (16)")
    parser.add_argument("--threads", type=int, default=4, help="fleet: threads each (4)")
    parser.add_argument("--clients", type=int, default=32, help="fleet: HTTP clients (32)")
    parser.add_argument("--drill-runs", type=int, default=20, help="drill: runs in a row (20)")
    args = parser.parse_args(argv)
    parts = args.part or list(PARTS)
    figures: dict[str, Any] = {}
    for part in parts:
        with timed(part):
            if part == "squeeze":
                figures[part] = part_squeeze(1 if args.quick else 3)
            elif part == "fleet":
                figures[part] = part_fleet(
                    args.workers, args.threads, args.clients, 1 if args.quick else 2
                )
            elif part == "simulated":
                figures[part] = part_simulated(args.quick)
            else:
                figures[part] = part_drill(3 if args.quick else args.drill_runs)
        save(part, figures[part])
    print(f"\nResults: {RESULTS.relative_to(ROOT)}")
    return figures


if __name__ == "__main__":
    main()
