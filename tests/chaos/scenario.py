"""Run one fault against the live app with traffic, then check every invariant.

A :class:`Fault` says what to break; :func:`run_fault` migrates the test's
cluster, takes the baselines, serves the app on a threaded WSGI server, starts
the traffic, injects the fault, waits for recovery, lets the "senders" redeliver
what was never acknowledged, stops everything and evaluates the invariants into
a :class:`~tests.chaos.report.FaultReport` (recorded for the report).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.core.management import call_command
from django.test import override_settings

from django_pg_resilience.backend.alias import reset as reset_alias_states
from django_pg_resilience.testing import LocalCluster, Node
from django_pg_resilience.testing.django import database_alias
from tests.chaos import report
from tests.chaos.app import CHAOS_ALIAS
from tests.chaos.report import Check, FaultReport
from tests.chaos.traffic import AppSignals, Result, Traffic
from tests.live_server import live_server
from tests.testapp.models import ChaosLedgerEntry, ChaosOrder

#: A request taking longer than this "hung" (the backend's deadline is 4 s, the
#: io_timeout 3 s; a sender such as Shopify gives up after 5 s).
HANG_BOUND = 10.0

#: The alias's options: the failover profile docs/backend.md recommends. io_timeout
#: bounds a round trip on a silent (blackholed) path; the rest are the defaults.
CHAOS_OPTIONS: dict[str, Any] = {
    "connect_timeout": 2,
    "resilience": {"io_timeout": 3.0, "tcp_user_timeout": 3.0},
}

ADDRESS = Any  # a Node, EndpointProxy or PgBouncer: anything with .host and .port


@dataclass
class Fault:
    """What to break. ``inject`` runs with traffic flowing and returns the primary after it."""

    name: str
    description: str
    inject: Callable[[LocalCluster, Traffic], Node]
    #: Runs before the app starts (e.g. take the database away).
    before_start: Callable[[LocalCluster], None] | None = None
    #: Wait for successful traffic before injecting (False when the DB starts down).
    warm_up: bool = True
    bound_s: float = 10.0
    webhook_path: str = "/webhooks/orders"
    duplicate_ratio: float = 0.3
    #: Acknowledged webhooks may be lost: the documented asynchronous-replication case.
    loss_expected: bool = False
    #: The DATABASES address of the app, when not the cluster's endpoint.
    address: Callable[[LocalCluster], contextlib.AbstractContextManager[ADDRESS]] | None = None
    #: Signals the app's backend must have sent on CHAOS_ALIAS once the fault began (e.g.
    #: "failover_detected"): evidence that the fault reached the app, beside what the fault
    #: steps themselves expect (Traffic.expect).
    must_see: tuple[str, ...] = ()
    counts: dict[str, Any] = field(default_factory=dict)


def migrate(node: Node) -> None:
    with database_alias("chaos_setup", node, OPTIONS={"connect_timeout": 2}):
        call_command("migrate", "testapp", database="chaos_setup", verbosity=0)
        call_command("migrate", "django_pg_resilience", database="chaos_setup", verbosity=0)


def server_connections(node: Node) -> int:
    (count,) = node.query(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )[0]
    return int(count)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass(frozen=True)
class Baseline:
    threads: int
    fds: int
    connections: int

    @classmethod
    def take(cls, primary: Node) -> Baseline:
        return cls(threading.active_count(), open_fds(), server_connections(primary))


def poll(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@contextlib.contextmanager
def running_app(address: ADDRESS) -> Iterator[str]:
    """The chaos app on CHAOS_ALIAS -> ``address``, served on 127.0.0.1; yields its URL."""
    # Per-process state of the alias from an earlier scenario's cluster.
    reset_alias_states()
    with (
        database_alias(CHAOS_ALIAS, address, OPTIONS=CHAOS_OPTIONS),
        override_settings(
            ROOT_URLCONF="tests.chaos.app",
            MIDDLEWARE=["django_pg_resilience.middleware.DatabaseUnavailableMiddleware"],
        ),
        live_server() as url,
    ):
        yield url
    reset_alias_states()


def recovery_time(results: list[Result], t_fault: float) -> float | None:
    """From the fault to the first success that started after the last error."""
    after = [r for r in results if r.kind in ("webhook", "get", "worker") and r.finished >= t_fault]
    failures = [r for r in after if not r.ok]
    since = max((r.started for r in failures), default=t_fault)
    successes = [r.finished for r in after if r.ok and r.started >= since]
    if not successes:
        return None
    return max(0.0, min(successes) - t_fault) if failures else 0.0


def _retry_after_ok(result: Result) -> bool:
    return (
        result.status == 503
        and (result.retry_after or "").isdigit()
        and int(result.retry_after or 0) >= 1
    )


def evaluate(
    fault: Fault,
    traffic: Traffic,
    t_fault: float,
    primary: Node,
    baseline: Baseline,
    unacked: list[str],
) -> FaultReport:
    results = traffic.snapshot()
    http = [r for r in results if r.kind != "worker"]
    workers = [r for r in results if r.kind == "worker"]
    checks: dict[str, Check] = {}

    # First: did the fault happen at all? A fault that never reached the app passes every
    # other invariant without proving anything.
    missing = [f"not seen: {what}" for what, happened in traffic.evidence if not happened]
    missing += [
        f"not seen: the app's {name} signal"
        for name in fault.must_see
        if traffic.app.count(name, since=t_fault) == 0
    ]
    seen = [what for what, happened in traffic.evidence if happened] + [
        f"{name} x{traffic.app.count(name, since=t_fault)}" for name in fault.must_see
    ]
    checks["fault_happened"] = Check(
        not missing and bool(seen),
        "; ".join(missing) if missing else "; ".join(seen) or "no evidence asked for",
    )

    five_hundreds = [
        r for r in http if r.status is not None and r.status >= 500 and r.status != 503
    ]
    checks["no_http_500"] = Check(
        not five_hundreds, f"{len(five_hundreds)} 5xx" if five_hundreds else ""
    )

    bad_errors = [r for r in http if not r.ok and not _retry_after_ok(r)]
    bad_worker = [r for r in workers if r.outcome not in ("ok", "unavailable", "unconfirmed")]
    detail = "; ".join(f"{r.kind} {r.status} {r.outcome}" for r in (bad_errors + bad_worker)[:3])
    checks["errors_are_503"] = Check(not bad_errors and not bad_worker, detail)

    slowest = max((r.elapsed for r in results), default=0.0)
    checks["no_hang"] = Check(slowest < HANG_BOUND, f"max {slowest:.1f} s")

    acked = {r.key for r in http if r.kind in ("webhook", "redelivery") and r.ok}
    stored = dict.fromkeys(acked, 0)
    for key, count in _order_counts(primary).items():
        stored[key] = count
    lost = sorted(key for key in acked if stored.get(key, 0) == 0)
    acked_units = {r.key for r in workers if r.ok}
    ledger = _ledger_tokens(primary)
    lost_units = acked_units - ledger
    lost_detail = f"{len(lost)} of {len(acked)} acked webhooks lost" if lost else ""
    kill = traffic.marks.get("kill")
    if lost and kill is not None:
        # When each lost acknowledgement was answered, relative to the primary's death.
        answered = sorted(round(r.finished - kill, 2) for r in http if r.ok and r.key in set(lost))
        lost_detail += f" (answered at kill{answered[:5]} s)"
    if lost_units and kill is not None:
        answered = sorted(round(r.finished - kill, 2) for r in workers if r.key in lost_units)
        lost_detail += f" (units answered at kill{answered[:5]} s)"
    if lost_units:
        lost_detail += f"; {len(lost_units)} of {len(acked_units)} worker units lost"
    if unacked:
        lost_detail += f"; {len(unacked)} never acknowledged after redelivery"
    checks["no_ack_lost"] = Check(
        not lost and not lost_units and not unacked,
        lost_detail or f"{len(acked)} webhooks, {len(acked_units)} units",
        expected_failure=fault.loss_expected and bool(lost) and not lost_units and not unacked,
    )

    duplicated = {key: n for key, n in stored.items() if n > 1}
    checks["no_duplicate"] = Check(
        not duplicated, f"{len(duplicated)} keys twice" if duplicated else ""
    )

    recovery = recovery_time(results, t_fault)
    checks["recovered"] = Check(
        recovery is not None and recovery <= fault.bound_s,
        "" if recovery is not None else "no success after the last error",
    )

    connections_back = poll(lambda: server_connections(primary) <= baseline.connections, 15)
    now_connections = server_connections(primary)
    checks["no_leaked_connections"] = Check(
        connections_back, f"{now_connections} vs baseline {baseline.connections}"
    )
    threads_back = poll(
        lambda: threading.active_count() <= baseline.threads + 1 and open_fds() <= baseline.fds + 4,
        15,
    )
    checks["threads_fds"] = Check(
        threads_back,
        f"threads {threading.active_count()}/{baseline.threads}, fds {open_fds()}/{baseline.fds}",
    )
    counts = {
        "requests": len(http),
        "errors_503": sum(1 for r in http if r.status == 503),
        "webhooks_acked": len(acked),
        "worker_units": len(acked_units),
        "lost_acked_webhooks": len(lost),
        "max_request_s": round(slowest, 2),
        **fault.counts,
    }
    return report.record(
        FaultReport(fault.name, fault.description, recovery, fault.bound_s, checks, counts)
    )


def _order_counts(node: Node) -> dict[str, int]:
    table = ChaosOrder._meta.db_table
    rows = node.query(f"SELECT webhook_key, count(*) FROM {table} GROUP BY webhook_key")
    return {key: int(count) for key, count in rows}


def _ledger_tokens(node: Node) -> set[str]:
    rows = node.query(f"SELECT token FROM {ChaosLedgerEntry._meta.db_table}")
    return {token for (token,) in rows}


def run_fault(cluster: LocalCluster, fault: Fault) -> FaultReport:
    """Break ``cluster`` as ``fault`` says under traffic; evaluate and record the invariants."""
    migrate(cluster.primary)
    cluster.wait_for_replay(cluster.standbys[0])
    cluster.endpoint  # noqa: B018 - made on first use: its thread belongs in the baseline
    baseline = Baseline.take(cluster.primary)
    if fault.before_start is not None:
        fault.before_start(cluster)
    address_cm = (
        fault.address(cluster) if fault.address else contextlib.nullcontext(cluster.endpoint)
    )
    with address_cm as address, running_app(address) as url, AppSignals() as app:
        traffic = Traffic(
            url, fault.webhook_path, duplicate_ratio=fault.duplicate_ratio, app=app
        ).start()
        try:
            if fault.warm_up:
                assert traffic.successes_after(0.0, 10, timeout=30), "no traffic got through"
            t_fault = time.monotonic()
            primary = fault.inject(cluster, traffic)
            # Recovered: fresh successes of every kind after the fault's last action.
            settled = time.monotonic()
            traffic.wait_for(
                lambda rs: all(
                    sum(1 for r in rs if r.kind == kind and r.ok and r.started >= settled) >= 5
                    for kind in ("webhook", "get", "worker")
                ),
                timeout=fault.bound_s + 15,
            )
        finally:
            traffic.stop()
        unacked = traffic.redeliver_unacknowledged()
    return evaluate(fault, traffic, t_fault, primary, baseline, unacked)
