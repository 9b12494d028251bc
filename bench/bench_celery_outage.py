"""Jobs and the webhook worker through long outages (``python3 bench/bench_celery.py outage``).

Two measurements, each on real servers of its own, with the package's default settings:

* ``jobs`` (``--seconds 75 300``): the example shop's order job (``shop.fulfil_order``,
  ``@idempotent_task``) on a real prefork worker (2 processes, Redis broker), 600 jobs
  sent over 20 s (a fifth twice: half at the same instant, half after the move), the
  primary crashed 6 s in, a pool process SIGKILLed half a second later, and the standby
  promoted and the endpoint moved ``S`` seconds after the crash (a synchronous standby).
  Lost, duplicated, FAILURE; the broker's messages while the database was away (LPUSH
  and RPUSH calls in Redis' commandstats: every send, retry and redelivery) against
  ``2 x tasks x (outage / cap) + tasks``; how long after the move the last job finished.
* ``webhook_worker`` (``--webhook-seconds 600``): ``manage.py process_webhooks`` (this
  process, ``--max-attempts 1``) with 300 queued events, the endpoint cut while a handler
  runs inside its transaction, and restored ``S`` seconds later: events lost or failed, the
  interrupted event's attempts, connection attempts per second while the database was away
  (counted by the endpoint proxy, after the backend's first 4 s deadline), and the time from
  the database answering to the first event processed.

Writes ``bench/results/celery_outage.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "celery_outage.json"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

JOBS = 600
SEND_SECONDS = 20.0
CRASH_AT = 6.0
#: JOB_OUTAGE_RETRY_CAP's default, which the example project keeps.
CAP = 60.0
EVENTS = 300
#: Seconds after the cut by which the backend's first operation has given up (deadline 4 s).
STEADY_AFTER = 5.0


def _broker_pushes(url: str) -> int:
    """LPUSH + RPUSH calls the broker has served: every message put on a queue."""
    import redis

    stats = redis.Redis.from_url(url).info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("lpush", "rpush"))


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def bench_jobs(outage: float, log_dir: Path) -> dict[str, Any]:
    """One long failover under 600 order jobs (see the module docs)."""
    from example_project.drill.jobs import JobRun
    from example_project.drill.stack import Stack

    started = time.monotonic()
    stack = Stack()
    with stack:
        cluster = stack.start_cluster()
        stack.migrate_and_seed()
        run = JobRun(stack, JOBS, log_dir / f"celery-outage-{outage:g}s-worker.log")
        try:
            run.start()
            run.send_during(SEND_SECONDS, CRASH_AT)
            traffic_start = time.monotonic() + 0.5
            _sleep_until(traffic_start + CRASH_AT)
            pushes_before = _broker_pushes(run.redis.url)
            old, standby = cluster.primary, cluster.standbys[0]
            cluster.kill(old)
            crashed = time.monotonic()
            _sleep_until(crashed + outage)
            new = cluster.promote(standby)
            stack.endpoint.point_to(new)
            moved_wall, moved = time.time(), time.monotonic()
            pushes_during = _broker_pushes(run.redis.url) - pushes_before
            summary = run.finish(moved_wall)
        finally:
            run.close()
    tasks = summary["messages_sent"]
    bound = 2 * tasks * (outage / CAP) + tasks
    return {
        "outage_s": outage,
        "jobs": JOBS,
        "tasks_sent": tasks,
        "states": summary["states"],
        "lost": summary["lost"],
        "duplicated": summary["duplicated"],
        "failed": summary["failed"],
        "unfinished": summary["unfinished"],
        "pool_process_killed": summary["pool_process_killed"] is not None,
        "broker_messages_during_outage": pushes_during,
        "broker_messages_bound": round(bound),
        "within_bound": pushes_during <= bound,
        "retries_logged": summary["celery_retries"],
        "drained_after_move_s": summary["drained_after_move"],
        "move_at_s_after_crash": round(moved - crashed, 2),
        "wall_s": round(time.monotonic() - started, 1),
        "ok": summary["lost"] == summary["duplicated"] == summary["failed"] == 0
        and summary["unfinished"] == 0,
    }


def _configure_django(endpoint: Any) -> None:
    import django
    from django.conf import settings

    from django_pg_resilience.testing.django import database_settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only-not-secret",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django_pg_resilience",
        ],
        USE_TZ=True,
        # What the README recommends for a worker: a persistent connection, connect_timeout 2.
        DATABASES={
            "default": database_settings(
                endpoint, CONN_MAX_AGE=None, OPTIONS={"connect_timeout": 2}
            )
        },
        LOGGING_CONFIG=None,
    )
    django.setup()


#: Opened by the orchestrator once the endpoint is cut under the gated handler.
_gate = threading.Event()
_gate_entered = threading.Event()


def _bench_view() -> type:
    from django.db import connection

    from django_pg_resilience.webhooks import ShopifyWebhookView

    class QueuedOrders(ShopifyWebhookView):
        process_async = True

        def get_secrets(self) -> list[str]:
            return ["bench-secret"]

        def handle(self, event: Any) -> None:
            if event.payload.get("gate"):
                _gate_entered.set()
                _gate.wait(60)
            with connection.cursor() as cursor:
                order = event.payload["id"]
                cursor.execute("INSERT INTO bench_order (order_id) VALUES (%s)", [order])

    return QueuedOrders


def bench_webhook_worker(outage: float) -> dict[str, Any]:
    """process_webhooks through an outage of ``outage`` s (see the module docs)."""
    from django_pg_resilience.testing import LocalCluster

    started = time.monotonic()
    with LocalCluster(standbys=1) as cluster:
        endpoint = cluster.endpoint
        _configure_django(endpoint)
        from django.core.management import call_command
        from django.db import connection
        from django.utils import timezone

        from django_pg_resilience.models import WebhookEvent

        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE bench_order (id bigserial PRIMARY KEY, order_id bigint)")
        view = _bench_view()
        # Importable by the worker, as a view's dotted path is.
        sys.modules[__name__].QueuedOrders = view  # type: ignore[attr-defined]
        now = timezone.now()
        WebhookEvent.objects.bulk_create(
            WebhookEvent(
                source="bench",
                key=f"event-{n}",
                status=WebhookEvent.Status.PENDING,
                payload={"id": n, "gate": n == 0},
                handler=f"{__name__}.QueuedOrders",
                next_attempt_at=now + datetime.timedelta(milliseconds=n),
            )
            for n in range(EVENTS)
        )
        connection.close()
        figures: dict[str, Any] = {}
        errors: list[BaseException] = []

        def orchestrate() -> None:
            try:
                figures.update(_cut_and_restore(cluster, outage))
            except BaseException as exc:
                errors.append(exc)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # stops process_webhooks

        thread = threading.Thread(target=orchestrate, daemon=True)
        thread.start()
        call_command("process_webhooks", "--max-attempts", "1", verbosity=0)
        thread.join(30)
        if errors:
            raise errors[0]
        rows = WebhookEvent.objects.values_list("status", "attempts")
        statuses: dict[str, int] = {}
        for status, _ in rows:
            statuses[status] = statuses.get(status, 0) + 1
        gated = WebhookEvent.objects.get(key="event-0")
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*), count(DISTINCT order_id) FROM bench_order")
            orders, unique = cursor.fetchone()
        connection.close()
    return {
        "outage_s": outage,
        "events": EVENTS,
        "statuses": statuses,
        "interrupted_event_attempts": gated.attempts,
        "orders": orders,
        "lost": EVENTS - unique,
        "duplicated": orders - unique,
        **figures,
        "wall_s": round(time.monotonic() - started, 1),
        "ok": statuses == {"succeeded": EVENTS} and orders == unique == EVENTS,
    }


def _cut_and_restore(cluster: Any, outage: float) -> dict[str, Any]:
    """The orchestrator's part: cut under the gated handler, restore, time the resumption."""
    import psycopg

    endpoint = cluster.endpoint
    if not _gate_entered.wait(120):
        raise TimeoutError("the gated handler never ran")
    endpoint.point_to(None)
    cut = time.monotonic()
    accepted_at_cut = endpoint.accepted
    _gate.set()
    _sleep_until(cut + STEADY_AFTER)
    steady_from, accepted_steady = time.monotonic(), endpoint.accepted
    _sleep_until(cut + outage)
    steady_tries = endpoint.accepted - accepted_steady
    steady_seconds = time.monotonic() - steady_from
    all_tries = endpoint.accepted - accepted_at_cut
    endpoint.point_to(cluster.primary)
    restored_wall = time.time()
    primary = cluster.primary
    dsn = f"host={primary.host} port={primary.port} user=postgres dbname=postgres"

    def done() -> tuple[int, float | None]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'succeeded'), "
                "extract(epoch FROM min(processed_at) FILTER (WHERE processed_at > "
                "to_timestamp(%s))) FROM django_pg_resilience_webhookevent",
                [restored_wall],
            ).fetchone()
            assert row is not None
            return int(row[0]), None if row[1] is None else float(row[1])

    deadline = time.monotonic() + 300
    while done()[0] < EVENTS and time.monotonic() < deadline:
        time.sleep(0.2)
    _, first_after = done()
    return {
        "connection_tries_whole_outage": all_tries,
        "connection_tries_per_s_whole_outage": round(all_tries / outage, 3),
        "connection_tries_per_s_steady": round(steady_tries / steady_seconds, 3),
        "resumed_after_s": None if first_after is None else round(first_after - restored_wall, 3),
    }


def _table(results: dict[str, Any]) -> str:
    lines = []
    for run in results.get("jobs", []):
        lines.append(
            f"jobs, {run['outage_s']:g} s outage: {run['tasks_sent']} tasks, lost {run['lost']}, "
            f"duplicated {run['duplicated']}, FAILURE {run['failed']}, unfinished "
            f"{run['unfinished']}; broker messages in the outage "
            f"{run['broker_messages_during_outage']} (bound {run['broker_messages_bound']}); "
            f"last job {run['drained_after_move_s']} s after the move; {run['wall_s']} s wall"
        )
    worker = results.get("webhook_worker")
    if worker:
        lines.append(
            f"process_webhooks, {worker['outage_s']:g} s outage: {worker['statuses']}, lost "
            f"{worker['lost']}, duplicated {worker['duplicated']}, interrupted event attempts "
            f"{worker['interrupted_event_attempts']}; tries/s in the outage "
            f"{worker['connection_tries_per_s_steady']} (whole: "
            f"{worker['connection_tries_per_s_whole_outage']}); resumed "
            f"{worker['resumed_after_s']} s after the database answered; {worker['wall_s']} s wall"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, nargs="*", default=[75.0, 300.0], help="job outages (75 300)"
    )
    parser.add_argument(
        "--webhook-seconds", type=float, default=600.0, help="webhook worker outage (600); 0: skip"
    )
    args = parser.parse_args(argv)
    log_dir = ROOT / "out"
    log_dir.mkdir(exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        },
        "jobs": [],
    }

    def save() -> None:
        results["total_wall_s"] = round(time.monotonic() - started, 1)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    measure: list[Callable[[], None]] = []
    for outage in args.seconds:
        measure.append(lambda outage=outage: results["jobs"].append(bench_jobs(outage, log_dir)))
    if args.webhook_seconds:
        measure.append(
            lambda: results.__setitem__(
                "webhook_worker", bench_webhook_worker(args.webhook_seconds)
            )
        )
    for step in measure:
        step()
        save()  # as it comes: a later failure keeps what was measured
        print(_table(results).splitlines()[-1], flush=True)
    results["ok"] = (
        all(run["ok"] for run in results["jobs"])
        and results.get("webhook_worker", {"ok": True})["ok"]
    )
    save()
    print(f"saved {RESULTS.relative_to(ROOT)} ({results['total_wall_s']} s)")
    return results
