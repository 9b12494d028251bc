"""The replica scenario: customers order and look at their order at once, through a
lagging read replica that is then killed.

The shop gets a read-only endpoint (a proxy in front of the standby) as its
``replica`` alias, and the standby streams from the primary through a link
that delays every chunk (``--replica-delay``, hundreds of ms), so the replica
really is behind. Customers place an order (a write), view it immediately
(their own write: it must be there), browse the recent orders for a moment,
and view their order again: every read may go to the replica once it has
replayed the customer's order, and not before. At ``--fault-at`` the standby is killed.

Invariants: no customer ever misses their own order (0 stale reads of one's
own writes), no request fails because the replica died (0 errors), and some
reads were served by the replica.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http.cookies import SimpleCookie
from typing import Any

from django_pg_resilience.testing import EndpointProxy, LocalCluster
from example_project.drill.stack import Stack

__all__ = ["ReplicaStack", "render", "run", "summarize"]

READ_FROM_HEADER = "X-Read-From"
REPLICA_ALIAS = "replica"
#: A customer browses this many pages, THINK_TIME apart, between orders: long
#: enough for the replica to replay their order, so some reads can go there.
BROWSE_PAGES = 5
THINK_TIME = 0.15
REQUEST_TIMEOUT = 15.0


@dataclass
class ReplicaStack(Stack):
    """The drill's stack plus a read-only endpoint and a delayed replication link."""

    delay_ms: float = 300.0
    link: EndpointProxy | None = None
    replica_endpoint: EndpointProxy | None = None

    def start_cluster(self) -> LocalCluster:
        cluster = super().start_cluster()
        standby = cluster.standbys[0]
        self.link = EndpointProxy(cluster.primary).start()
        cluster.replicate_through(standby, self.link)
        self.link.delay(self.delay_ms)
        self.replica_endpoint = EndpointProxy(standby).start()
        return cluster

    def env(self) -> dict[str, str]:
        env = super().env()
        assert self.cluster is not None and self.replica_endpoint is not None
        endpoint = self.replica_endpoint
        env["REPLICA_DATABASE_URL"] = (
            f"postgres://postgres@{endpoint.host}:{endpoint.port}/{self.cluster.dbname}"
        )
        return env

    def close(self) -> None:
        try:
            super().close()
        finally:
            for proxy in (self.link, self.replica_endpoint):
                if proxy is not None:
                    with contextlib.suppress(Exception):
                        proxy.close()


@dataclass
class Request:
    kind: str  # "order" (POST), "own" (view one's own order), "browse" (recent orders)
    start: float
    end: float
    status: int
    read_from: str = ""


@dataclass
class Customer:
    """One customer: a cookie jar and what they did."""

    host: str
    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def call(self, method: str, path: str, kind: str) -> tuple[int, dict[str, Any]]:
        start = time.monotonic()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        headers = {"Accept": "application/json"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body: dict[str, Any] = {}
        read_from = ""
        try:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            status = response.status
            read_from = response.getheader(READ_FROM_HEADER) or ""
            for header in response.headers.get_all("Set-Cookie") or []:
                jar: SimpleCookie = SimpleCookie(header)
                self.cookies.update({name: morsel.value for name, morsel in jar.items()})
            with contextlib.suppress(ValueError):
                body = json.loads(response.read() or b"{}")
        except (OSError, http.client.HTTPException):
            status = 0
        finally:
            conn.close()
        self.requests.append(Request(kind, start, time.monotonic(), status, read_from))
        return status, body

    def shop(self, stop_at: float) -> None:
        """Order, view the order at once, browse a while, view the order again."""
        while time.monotonic() < stop_at:
            status, body = self.call("POST", "/api/orders/", "order")
            own = f"/api/orders/{body['id']}/" if 200 <= status < 300 else None
            if own:
                self.call("GET", own, "own")
            for _ in range(BROWSE_PAGES):
                time.sleep(THINK_TIME)
                self.call("GET", "/api/orders/recent/", "browse")
            if own:
                self.call("GET", own, "own")


def summarize(
    requests: list[Mapping[str, Any]], killed_at: float | None, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The scenario's figures from every request (times relative to the traffic's start)."""

    def phase(request: Mapping[str, Any]) -> str:
        return "before" if killed_at is None or request["end"] < killed_at else "after"

    stale = [r for r in requests if r["kind"] == "own" and r["status"] == 404]
    errors = [
        r
        for r in requests
        if not 200 <= r["status"] < 300 and not (r["kind"] == "own" and r["status"] == 404)
    ]
    reads = [r for r in requests if r["kind"] != "order" and 200 <= r["status"] < 300]
    by_alias: dict[str, Counter[str]] = {"before": Counter(), "after": Counter()}
    for read in reads:
        by_alias[phase(read)][read["read_from"]] += 1
    replica_reads = sum(counter[REPLICA_ALIAS] for counter in by_alias.values())
    own = [r for r in reads if r["kind"] == "own"]
    return {
        "options": dict(options),
        "requests": len(requests),
        "orders_placed": sum(
            1 for r in requests if r["kind"] == "order" and 200 <= r["status"] < 300
        ),
        "replica_killed_at": killed_at,
        "stale_own_reads": len(stale),
        "errors": len(errors),
        "errors_by_status": dict(Counter(str(r["status"]) for r in errors)),
        "reads_by_alias": {name: dict(counter) for name, counter in by_alias.items()},
        "own_reads_from_replica": sum(1 for r in own if r["read_from"] == REPLICA_ALIAS),
        "replica_share": round(replica_reads / len(reads), 3) if reads else 0.0,
        "replica_share_before_kill": _share(by_alias["before"]),
        "replica_reads_after_kill": by_alias["after"][REPLICA_ALIAS],
        "ok": not stale and not errors and by_alias["before"][REPLICA_ALIAS] > 0,
    }


def _share(counter: Counter[str]) -> float:
    total = sum(counter.values())
    return round(counter[REPLICA_ALIAS] / total, 3) if total else 0.0


def render(summary: Mapping[str, Any]) -> str:
    killed = summary["replica_killed_at"]
    lines = [
        "Replica scenario: a lagging read replica, then killed",
        f"  replication delay            {summary['options']['replica_delay_ms']:g} ms",
        f"  requests / orders placed     {summary['requests']} / {summary['orders_placed']}",
        f"  replica killed at            t={killed:.1f}s" if killed is not None else "",
        "  reads by alias (2xx):",
    ]
    for phase_name in ("before", "after"):
        counts = summary["reads_by_alias"][phase_name]
        cells = ", ".join(f"{alias} {n}" for alias, n in sorted(counts.items())) or "none"
        lines.append(f"    {phase_name + ' the kill':<26} {cells}")
    lines += [
        f"  share served by the replica  {summary['replica_share']:.1%} overall, "
        f"{summary['replica_share_before_kill']:.1%} before the kill",
        f"  own orders read on replica   {summary['own_reads_from_replica']}"
        " (only once it had replayed them)",
        f"  stale reads of own writes    {summary['stale_own_reads']}",
        f"  errors                       {summary['errors']} {summary['errors_by_status'] or ''}",
        f"  invariants hold              {'yes' if summary['ok'] else 'NO'}",
    ]
    return "\n".join(line for line in lines if line)


def run(args: argparse.Namespace, say: Any) -> int:
    """The replica scenario, end to end; 0 when its invariants hold, 1 otherwise."""
    fault_at = args.fault_at if args.fault_at is not None else max(2.0, args.duration * 0.5)
    options = {
        "scenario": "replica",
        "duration": args.duration,
        "fault_at": fault_at,
        "customers": args.concurrency,
        "workers": args.workers,
        "threads": args.threads,
        "replica_delay_ms": args.replica_delay,
    }
    stack = ReplicaStack(
        workers=args.workers,
        threads=args.threads,
        server_log=args.server_log,
        delay_ms=args.replica_delay,
    )
    with stack:
        say("Starting a primary + a standby streaming through a delayed link ...")
        cluster = stack.start_cluster()
        say(
            f"  replication delay {args.replica_delay:g} ms; read-only endpoint "
            f"127.0.0.1:{stack.replica_endpoint.port if stack.replica_endpoint else 0}"
        )
        say("Migrating and seeding the example shop ...")
        stack.migrate_and_seed()
        say(f"Starting gunicorn ({args.workers} workers x {args.threads} threads) ...")
        stack.start_server()
        customers = [Customer("127.0.0.1", stack.port) for _ in range(args.concurrency)]
        started_at = time.monotonic()
        stop_at = started_at + args.duration
        threads = [threading.Thread(target=c.shop, args=(stop_at,), daemon=True) for c in customers]
        say(
            f"Traffic: {len(customers)} customers for {args.duration:g} s; "
            f"the replica is killed at t={fault_at:g}s"
        )
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, started_at + fault_at - time.monotonic()))
        killed_at = time.monotonic() - started_at
        cluster.kill(cluster.standbys[0])
        say(f"  t={killed_at:.1f}s  replica killed")
        for thread in threads:
            thread.join(timeout=args.duration + REQUEST_TIMEOUT * 3)
    requests = [
        {**asdict(r), "start": r.start - started_at, "end": r.end - started_at}
        for customer in customers
        for r in customer.requests
    ]
    summary = summarize(requests, killed_at, options)
    say("")
    say(render(summary))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    say(f"\nJSON report: {args.json}")
    return 0 if summary["ok"] else 1
