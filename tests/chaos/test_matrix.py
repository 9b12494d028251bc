"""The fault matrix: each fault on a fresh primary + standby, with traffic running.

Every test runs the same shop (tests/chaos/app.py) on a real threaded WSGI
server: storefront GETs, Shopify order webhooks with 30 % duplicates
(acknowledged only once a standby flushed them: ``durable_ack``), and an
``atomic_with_retry`` worker. After the fault the senders redeliver whatever
was never acknowledged, as Shopify does, and the invariants are checked (see
scenario.evaluate): no 500, every error a 503 with Retry-After, nothing hung,
no acknowledged webhook lost, no duplicated effect, recovery within the bound,
server connections, threads and fds back to their baselines.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from django_pg_resilience.testing import LocalCluster, Node, PgBouncer
from tests.chaos.scenario import Fault, poll, run_fault
from tests.chaos.traffic import Traffic

pytestmark = [pytest.mark.chaos, pytest.mark.usefixtures("unblocked_db")]


def failover(
    cluster: LocalCluster, *, stop_mode: str = "immediate", standby: Node | None = None
) -> Node:
    """The managed-database failover: the primary goes, the standby is promoted,
    the endpoint's name moves to it, and a standby comes back.

    The old node is rewound into the new standby, as a managed database
    provisions a new one: until a standby is back, durable_ack cannot confirm
    and webhooks get 503 (by design), so the recovery time includes it.
    """
    old = cluster.primary
    standby = standby or cluster.standbys[0]
    if stop_mode == "immediate":
        cluster.kill(old)
    else:
        cluster.stop(old, stop_mode)
    new = cluster.promote(standby)
    cluster.endpoint.point_to(new)
    cluster.rejoin_as_standby(old)
    return new


def assert_invariants(report_: object) -> None:
    failures = report_.failures()  # type: ignore[attr-defined]
    assert not failures, {name: check.cell() for name, check in failures.items()}


#: A failover reached the app: its backend noticed the new primary (a new timeline).
SAW_FAILOVER = ("failover_detected",)


def test_crash_then_promote(pg_fresh_cluster: LocalCluster) -> None:
    fault = Fault(
        "crash + promote",
        "primary killed (pg_ctl -m immediate), standby promoted, endpoint moved to it",
        lambda cluster, traffic: failover(cluster),
        must_see=SAW_FAILOVER,
    )
    assert_invariants(run_fault(pg_fresh_cluster, fault))


def test_fast_shutdown_then_promote(pg_fresh_cluster: LocalCluster) -> None:
    fault = Fault(
        "switchover (fast shutdown + promote)",
        "planned switchover: primary stopped with -m fast (57P01 to every session), "
        "standby promoted, endpoint moved",
        lambda cluster, traffic: failover(cluster, stop_mode="fast"),
        must_see=SAW_FAILOVER,
    )
    assert_invariants(run_fault(pg_fresh_cluster, fault))


def _blackhole_then_promote(cluster: LocalCluster, traffic: Traffic) -> Node:
    cluster.endpoint.blackhole()
    # Hold the blackhole until a request stuck in it has failed by itself
    # (io_timeout, 3 s): a real partition does not close anything.
    moment = time.monotonic()
    traffic.expect(
        traffic.wait_for(
            lambda rs: any(not r.ok and r.started > moment for r in rs if r.kind == "webhook"),
            8.0,
        ),
        "a webhook stuck in the blackhole failed by itself",
    )
    old = cluster.primary
    cluster.kill(old)
    new = cluster.promote(cluster.standbys[0])
    cluster.endpoint.point_to(new)
    cluster.endpoint.restore()
    cluster.rejoin_as_standby(old)
    return new


def test_blackhole_then_promote(pg_fresh_cluster: LocalCluster) -> None:
    fault = Fault(
        "blackhole + promote",
        "everything through the endpoint silently dropped (no RST, no FIN) until a stuck "
        "request fails by itself, then the primary killed and the standby promoted; "
        "io_timeout 3 s bounds a stuck round trip",
        _blackhole_then_promote,
        bound_s=15.0,
        must_see=SAW_FAILOVER,
    )
    report_ = run_fault(pg_fresh_cluster, fault)
    assert_invariants(report_)


def _resets_mid_query(cluster: LocalCluster, traffic: Traffic) -> Node:
    start = time.monotonic()
    end = start + 3.0
    while time.monotonic() < end:
        cluster.endpoint.reset_all()
        time.sleep(0.1)  # the fault's own rhythm: a reset every 100 ms
    # Connections the app had open were reset, and the app replaced them.
    replaced = traffic.app.count("reconnected", since=start)
    traffic.expect(replaced > 0, f"{replaced} connections reset and replaced")
    return cluster.primary


def test_connection_resets_mid_query(pg_fresh_cluster: LocalCluster) -> None:
    fault = Fault(
        "connection resets (RST every 100 ms for 3 s)",
        "every open connection through the endpoint reset (RST) ten times a second for 3 s",
        _resets_mid_query,
    )
    assert_invariants(run_fault(pg_fresh_cluster, fault))


def _stale_endpoint_to_old_primary(cluster: LocalCluster, traffic: Traffic) -> Node:
    old = cluster.primary
    new = failover(cluster)
    # A stale DNS answer / pool: the name points at the demoted node for a while.
    cluster.endpoint.point_to(old)
    moment = time.monotonic()
    # The app must meet the standby: a connection it opened there refused as read-only (25006).
    met_standby = poll(lambda: traffic.app.count("connection_retry", moment, "25006") > 0, 10)
    traffic.expect(met_standby, "the app met the old primary as a standby (25006)")
    cluster.endpoint.point_to(new)
    return new


def test_old_primary_back_as_standby(pg_fresh_cluster: LocalCluster) -> None:
    fault = Fault(
        "old primary back as standby (25006)",
        "crash + promote, the old primary rewound and back as a standby, and the endpoint "
        "pointing at it (read-only: 25006) for ~10 webhook requests before it moves",
        _stale_endpoint_to_old_primary,
        bound_s=15.0,
        must_see=SAW_FAILOVER,
    )
    assert_invariants(run_fault(pg_fresh_cluster, fault))


def _latency_failover(cluster: LocalCluster, traffic: Traffic) -> Node:
    cluster.endpoint.delay(100)  # per direction: 200 ms per round trip
    moment = time.monotonic()
    traffic.expect(
        traffic.successes_after(moment, 5, timeout=10), "requests succeeded under the latency"
    )
    # Each of them paid at least one delayed round trip: the latency was there.
    under_latency = [r for r in traffic.snapshot() if r.ok and r.started >= moment]
    traffic.expect(
        bool(under_latency) and min(r.elapsed for r in under_latency) >= 0.2,
        "every success under the latency took a 200 ms round trip or more",
    )
    new = failover(cluster)
    cluster.endpoint.delay(100)
    return new


def test_latency_during_failover(pg_fresh_cluster: LocalCluster) -> None:
    fault = Fault(
        "200 ms latency + crash + promote",
        "100 ms added each way on the endpoint, then a crash + promote under it "
        "(the latency stays until the end of the traffic)",
        _latency_failover,
        bound_s=15.0,
        must_see=SAW_FAILOVER,
    )
    assert_invariants(run_fault(pg_fresh_cluster, fault))


def _database_comes_up(cluster: LocalCluster, traffic: Traffic) -> Node:
    # The app has been answering while the database is away: ten 503s first.
    traffic.expect(
        traffic.wait_for(lambda rs: sum(1 for r in rs if r.status == 503) >= 10, 10),
        "ten 503s while the database was down",
    )
    cluster.endpoint.point_to(cluster.primary)
    return cluster.primary


def test_database_down_when_the_app_starts(pg_fresh_cluster: LocalCluster) -> None:
    fault = Fault(
        "database down at app start",
        "the endpoint leads nowhere (connection refused) when the app starts; it comes up "
        "after ten 503s",
        _database_comes_up,
        before_start=lambda cluster: cluster.endpoint.point_to(None),
        warm_up=False,
    )
    assert_invariants(run_fault(pg_fresh_cluster, fault))


@contextlib.contextmanager
def _pgbouncer(cluster: LocalCluster) -> Iterator[PgBouncer]:
    # Lowered on purpose to fit bound_s: with PgBouncer's defaults (15 s login
    # retry) the site comes back about 15 s later (docs/node-metrics.md, "PgBouncer in front").
    with PgBouncer(
        cluster.endpoint, pool_mode="transaction", server_login_retry=1, server_connect_timeout=2
    ) as bouncer:
        yield bouncer


def test_pgbouncer_transaction_pooling_during_failover(pg_fresh_cluster: LocalCluster) -> None:
    fault = Fault(
        "PgBouncer (transaction pooling) + crash + promote",
        "the app talks to PgBouncer in transaction mode (as DigitalOcean's pools do), "
        "PgBouncer to the endpoint; crash + promote behind it",
        lambda cluster, traffic: failover(cluster),
        address=_pgbouncer,
        bound_s=15.0,
        must_see=SAW_FAILOVER,
    )
    assert_invariants(run_fault(pg_fresh_cluster, fault))


def _lagging_standby_failover(cluster: LocalCluster, traffic: Traffic) -> Node:
    standby = cluster.standbys[0]
    # The standby falls behind: WAL receipt stopped, replay paused. (Pausing replay
    # alone loses nothing: promotion replays everything received first.)
    standby.query("ALTER SYSTEM SET primary_conninfo = ''")
    standby.query("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while standby.query("SELECT count(*) FROM pg_stat_wal_receiver")[0][0]:
        assert time.monotonic() < deadline, "the WAL receiver did not stop"
        time.sleep(0.02)
    # Paused only now: a startup process paused before it acted on the new
    # primary_conninfo would never stop the WAL receiver.
    standby.query("SELECT pg_wal_replay_pause()")
    behind_since = time.monotonic()
    # Deliveries answered while the standby is behind: acknowledged (async ack) or 503 (durable).
    traffic.expect(
        traffic.wait_for(
            lambda rs: sum(1 for r in rs if r.kind == "webhook" and r.started > behind_since) >= 10,
            10,
        ),
        "ten deliveries answered while the standby was behind",
    )
    traffic.marks["kill"] = time.monotonic()
    return failover(cluster, standby=standby)


def test_lagging_standby_with_durable_ack_loses_nothing(pg_fresh_cluster: LocalCluster) -> None:
    fault = Fault(
        "standby behind at failover, durable_ack",
        "the standby stops receiving WAL (and pauses replay); deliveries keep coming; then "
        "crash + promote of that standby. durable_ack answers 503 while no standby has the "
        "commit, so the sender redelivers to the new primary",
        _lagging_standby_failover,
        duplicate_ratio=0.0,
        bound_s=15.0,
        must_see=SAW_FAILOVER,
    )
    report_ = run_fault(pg_fresh_cluster, fault)
    assert report_.counts["errors_503"] >= 5  # the withheld acknowledgements
    assert_invariants(report_)


def test_lagging_standby_without_durable_ack_can_lose_acknowledged_webhooks(
    pg_fresh_cluster: LocalCluster,
) -> None:
    """The documented hole: acknowledged at COMMIT on the primary, gone with it.

    With asynchronous replication (managed databases' default) the primary
    answers COMMIT before any standby has the WAL; a view without durable_ack
    acknowledges then, the sender never retries, and the failover to a standby
    that was behind loses the event. The durable_ack test above is the fix.
    """
    fault = Fault(
        "standby behind at failover, NO durable_ack",
        "same as above with the view acknowledging at COMMIT: acknowledged webhooks are "
        "lost with the old primary (expected; this is what durable_ack prevents)",
        _lagging_standby_failover,
        webhook_path="/webhooks/orders-async-ack",
        duplicate_ratio=0.0,
        loss_expected=True,
        bound_s=15.0,
        must_see=SAW_FAILOVER,
    )
    report_ = run_fault(pg_fresh_cluster, fault)
    assert_invariants(report_)
    # 10 deliveries started behind the standby; at most 4 (one per sender) were
    # still in flight at the kill.
    assert report_.counts["lost_acked_webhooks"] >= 5, report_.counts
