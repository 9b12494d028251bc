"""The drill's command line: ``python3 example_project/drill.py --help``."""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from example_project.drill import jobs, replica, report
from example_project.drill.scenarios import SCENARIOS
from example_project.drill.stack import ROOT, WEBHOOK_SECRET, Stack
from example_project.drill.traffic import PROGRESS_KEYS, TrafficConfig, run_process

EXIT_INVARIANT_BROKEN = 1
EXIT_DRILL_FAILED = 3  # 2 is argparse's "bad option"
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 example_project/drill.py",
        description=(
            "Run the example shop on gunicorn against a local primary + standby behind an "
            "endpoint proxy, drive storefront reads and Shopify webhooks at it, fail the "
            "primary over, and report what the users saw and whether any order was lost or "
            "duplicated. Exits 1 if an invariant broke (a 500, a lost acknowledged order, "
            "a duplicated order)."
        ),
    )
    parser.add_argument(
        "--scenario",
        choices=sorted([*SCENARIOS, "replica"]),
        default="crash",
        help="what fails: the primary crashes, is switched over, stops answering, or comes "
        "back as a standby behind a stale endpoint (crash); replica: a lagging read replica "
        "serves customers who order and view their order at once, then it is killed",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of traffic (20)")
    parser.add_argument(
        "--promotion-delay",
        type=float,
        default=2.0,
        help="seconds between the fault and the promotion of the standby (2)",
    )
    parser.add_argument(
        "--fault-at", type=float, default=None, help="seconds into the traffic (30%% of it)"
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=None,
        metavar="S",
        help="a long failover: S seconds between the fault and the promotion + endpoint move "
        "(replaces --promotion-delay). Webhook senders retry as Shopify does (8 retries, each "
        "wait doubling, squeezed into S) until the drain ends; the traffic and the drain grow "
        "to cover the outage; the report says how long after the move everything drained",
    )
    parser.add_argument(
        "--durable-ack",
        action="store_true",
        help="acknowledge a webhook only once the standby has flushed its commit",
    )
    parser.add_argument(
        "--engine",
        choices=["resilient", "stock"],
        default="resilient",
        help="stock: Django's own postgresql backend and a naive webhook view, for comparison",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=15.0,
        help="seconds after the traffic during which unacknowledged webhooks are retried (15)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="client threads, half readers (8)"
    )
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes (3)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (4)")
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "out" / "drill.json",
        help="where the JSON report goes (out/drill.json)",
    )
    parser.add_argument(
        "--server-log",
        type=Path,
        default=ROOT / "out" / "drill-server.log",
        help="gunicorn's output (out/drill-server.log)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="TLS-only nodes (plain TCP refused), reached with sslmode=verify-full and the "
        "cluster's CA, as on a managed database",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        metavar="N",
        help="also send N background jobs to a Celery worker (Redis broker) during the traffic, "
        "SIGKILL one of its processes in the outage, and check each took effect once (0)",
    )
    parser.add_argument(
        "--pgbouncer",
        nargs="?",
        const="defaults",
        choices=["defaults", "recommended"],
        default=None,
        help="put PgBouncer (transaction pooling) between the app and the endpoint, with "
        "PgBouncer's own failover settings (defaults) or docs/node-metrics.md's (recommended)",
    )
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        metavar="S",
        help="the shop's CONN_MAX_AGE: keep each thread's connection S seconds (the settings' "
        "default is 0: a connection per request; docs/backend.md recommends 60)",
    )
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the timeline (matplotlib)")
    parser.add_argument(
        "--replica-delay",
        type=float,
        default=300.0,
        help="--scenario replica: milliseconds of delay on the replication link (300)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


class Progress:
    """One line a second while the traffic runs."""

    def __init__(self, counters: Any, started_at: float, quiet: bool) -> None:
        self.counters = counters
        self.started_at = started_at
        self.quiet = quiet
        self.previous = [0] * len(PROGRESS_KEYS)
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def tick(self) -> None:
        if self.quiet:
            return
        with self.counters.get_lock():
            now = list(self.counters)
        delta = [n - p for n, p in zip(now, self.previous, strict=True)]
        self.previous = now
        cells = "  ".join(f"{k} {d:>4}" for k, d in zip(PROGRESS_KEYS, delta, strict=True))
        notes = ("  <- " + "; ".join(self.notes)) if self.notes else ""
        self.notes = []
        print(f"  t={time.monotonic() - self.started_at:5.1f}s  {cells}{notes}", flush=True)


def say(text: str) -> None:
    print(text, flush=True)


def drive_traffic(
    args: argparse.Namespace, stack: Stack, fault_at: float, work_dir: Path
) -> tuple[dict[str, Any], dict[str, float], float]:
    """Run the traffic process and, at ``fault_at``, the scenario; return records, events, t0."""
    context = multiprocessing.get_context("spawn")
    readers = max(1, args.concurrency // 2)
    senders = max(1, args.concurrency - readers)
    results_path = work_dir / "traffic.json"
    started_at = time.monotonic() + 0.5
    config = TrafficConfig(
        host="127.0.0.1",
        port=stack.port,
        secret=WEBHOOK_SECRET,
        readers=readers,
        senders=senders,
        stop_at=started_at + args.duration,
        drain_until=started_at + args.duration + args.drain,
        results_path=str(results_path),
        shopify_span=args.outage,
    )
    counters = context.Array("l", len(PROGRESS_KEYS))
    ready = context.Event()
    traffic = context.Process(
        target=run_process, args=(config, counters, ready), name="drill-traffic"
    )
    progress = Progress(counters, started_at, args.quiet)
    events: dict[str, float] = {}
    scenario_errors: list[BaseException] = []

    def mark(name: str) -> None:
        events[name] = time.monotonic() - started_at
        progress.note(name.replace("_", " "))

    def run_scenario() -> None:
        try:
            assert stack.cluster is not None
            SCENARIOS[args.scenario](stack.cluster, stack.endpoint, args.promotion_delay, mark)
        except BaseException as exc:  # reported by the main thread
            scenario_errors.append(exc)

    scenario = threading.Thread(target=run_scenario, name="drill-scenario", daemon=True)
    traffic.start()
    try:
        if not ready.wait(timeout=60):
            raise RuntimeError("the traffic process did not start")
        say(
            f"Traffic: {readers} storefront readers, {senders} webhook senders for "
            f"{args.duration:g} s; {args.scenario} at t={fault_at:g}s, promotion after "
            f"{args.promotion_delay:g} s"
        )
        next_tick = started_at + 1
        while traffic.is_alive():
            now = time.monotonic()
            if scenario.ident is None and now >= started_at + fault_at:
                scenario.start()
            if now >= next_tick:
                progress.tick()
                next_tick += 1
            traffic.join(timeout=min(0.1, max(0.0, next_tick - time.monotonic())))
        if scenario.ident is not None:
            scenario.join(timeout=120)
    finally:
        if traffic.is_alive():
            traffic.terminate()
            traffic.join(timeout=10)
    if scenario_errors:
        raise RuntimeError(f"the {args.scenario} scenario failed: {scenario_errors[0]!r}")
    if traffic.exitcode != 0:
        raise RuntimeError(f"the traffic process exited with {traffic.exitcode}")
    return json.loads(results_path.read_text()), events, started_at


def cover_the_outage(args: argparse.Namespace, fault_at: float) -> None:
    """``--outage``: promote after it, run the traffic 10 s past the move, drain as long again."""
    if args.outage is None:
        return
    args.promotion_delay = args.outage
    args.duration = max(args.duration, fault_at + args.outage + 10.0)
    # A sender's last wait before the move can be half the outage: the drain covers it.
    args.drain = max(args.drain, args.outage)


def run(args: argparse.Namespace) -> int:
    if args.scenario == "replica":
        return replica.run(args, say)
    fault_at = args.fault_at if args.fault_at is not None else max(2.0, args.duration * 0.3)
    cover_the_outage(args, fault_at)
    options = {
        "scenario": args.scenario,
        "engine": args.engine,
        "duration": args.duration,
        "promotion_delay": args.promotion_delay,
        "outage": args.outage,
        "fault_at": fault_at,
        "durable_ack": args.durable_ack,
        "drain": args.drain,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "threads": args.threads,
        "tls": args.tls,
        "jobs": args.jobs,
        "pgbouncer": args.pgbouncer,
        "conn_max_age": args.conn_max_age,
    }
    stack = Stack(
        pgbouncer=args.pgbouncer,
        engine=args.engine,
        durable_ack=args.durable_ack,
        workers=args.workers,
        threads=args.threads,
        server_log=args.server_log,
        tls=args.tls,
        conn_max_age=args.conn_max_age,
    )
    job_summary = None
    with (
        stack,
        tempfile.TemporaryDirectory(prefix="drill-") as work_dir,
        contextlib.ExitStack() as extras,
    ):
        say("Starting a PostgreSQL primary + standby behind an endpoint proxy ...")
        cluster = stack.start_cluster()
        standbys = ", ".join(node.name for node in cluster.standbys)
        say(
            f"  primary {cluster.primary.name}, standby {standbys}, "
            f"endpoint 127.0.0.1:{stack.endpoint.port}"
            + (" (TLS only, sslmode=verify-full)" if args.tls else "")
        )
        if stack.bouncer is not None:
            say(f"  PgBouncer ({args.pgbouncer} settings) on 127.0.0.1:{stack.bouncer.port}")
        say("Migrating and seeding the example shop ...")
        stack.migrate_and_seed()
        say(f"Starting gunicorn ({args.workers} workers x {args.threads} threads) ...")
        stack.start_server()
        say(f"  http://127.0.0.1:{stack.port}/  (engine: {args.engine})")
        health_before = stack.health()
        say(f"Health before: {health_before.status}")
        job_run = None
        if args.jobs:
            say(
                f"Starting Redis and a Celery worker for {args.jobs} jobs (synchronous standby) ..."
            )
            job_run = jobs.JobRun(stack, args.jobs, args.server_log.with_name("drill-worker.log"))
            extras.callback(job_run.close)
            job_run.start()
            job_run.send_during(args.duration, fault_at)
        traffic, events, started_at = drive_traffic(args, stack, fault_at, Path(work_dir))
        if job_run is not None:
            say("Waiting for the background jobs ...")
            moved = events.get("endpoint_moved")
            # The move as a wall-clock time: Celery stamps a job's end in UTC.
            moved_at = (
                None if moved is None else time.time() - (time.monotonic() - (started_at + moved))
            )
            job_summary = job_run.finish(moved_at)
        say("Traffic done. Counting orders on the new primary ...")
        orders = stack.orders_in_database()
        health_after = stack.health()
        missing = report.acknowledged_order_ids(traffic["attempts"]) - set(orders)
        on_old_primary = None
        if missing:
            say(f"{len(missing)} acknowledged orders missing: asking the old primary ...")
            on_old_primary = stack.orders_on_the_old_primary(missing)
    summary = report.summarize(
        options=options,
        traffic=traffic,
        events=events,
        orders_in_db=orders,
        on_old_primary=on_old_primary,
        started_at=started_at,
        health_before=health_before.as_dict(),
        health_after=health_after.as_dict(),
    )
    if job_summary is not None:
        jobs.merge(summary, job_summary)
    say("")
    say(report.render(summary))
    if job_summary is not None:
        say("\n" + jobs.render(job_summary))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    say(f"\nJSON report: {args.json}")
    if args.plot is not None:
        say(report.plot(summary, args.plot))
    return 0 if summary["ok"] else EXIT_INVARIANT_BROKEN


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fault_at is not None and args.fault_at >= args.duration:
        parser.error("--fault-at must be less than --duration")
    if args.duration <= 2:
        parser.error("--duration must be more than 2 seconds")
    if args.durable_ack and args.engine == "stock":
        parser.error("--durable-ack is a feature of django-pg-resilience, not of --engine stock")
    if args.scenario == "replica" and args.engine == "stock":
        parser.error("--scenario replica exercises django-pg-resilience's router, not stock")
    if args.jobs < 0:
        parser.error("--jobs must be 0 or more")
    if args.outage is not None and args.outage <= 0:
        parser.error("--outage must be more than 0 seconds")
    if args.outage is not None and args.scenario == "replica":
        parser.error("--outage applies to the failover scenarios, not --scenario replica")
    if args.jobs and args.engine == "stock":
        parser.error(
            "--jobs runs idempotent Celery tasks of django-pg-resilience, not --engine stock"
        )
    if args.conn_max_age is not None and args.conn_max_age < 0:
        parser.error("--conn-max-age must be 0 or more")
    if args.concurrency < 2:
        parser.error("--concurrency must be at least 2 (readers and senders)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        say("\nInterrupted: everything has been stopped.")
        return EXIT_INTERRUPTED
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"drill failed: {exc}", file=sys.stderr)
        return EXIT_DRILL_FAILED
