"""The cluster report is computed by one caller at a time and reused for HEALTH_CACHE_SECONDS."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.test import Client

from django_pg_resilience import stats
from django_pg_resilience.health.cache import ReportCache, cluster_report
from django_pg_resilience.testing import LocalCluster
from tests.health.conftest import node_entry

pytestmark = pytest.mark.urls("tests.health.urls")
TOKEN = "a-long-random-health-token-for-tests"
#: The probes connect to this database only, so its session count is theirs.
PROBE_DB = "health_probe_count"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BlockingCompute:
    """A stand-in round that counts its calls and ends when released."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()

    def __call__(self) -> Any:
        self.calls += 1
        assert self.release.wait(10)
        return f"report {self.calls}"


def test_many_callers_share_one_round_and_reuse_it_until_it_expires() -> None:
    clock, compute = FakeClock(), BlockingCompute()
    cache = ReportCache(compute, clock)  # type: ignore[arg-type]
    answers: list[Any] = []
    callers = [
        threading.Thread(target=lambda: answers.append(cache.get(5.0, 10.0))) for _ in range(20)
    ]
    for caller in callers:
        caller.start()
    compute.release.set()
    for caller in callers:
        caller.join(10)
    assert compute.calls == 1
    assert [answer.report for answer in answers] == ["report 1"] * 20

    clock.now += 5.0
    assert cache.get(5.0, 10.0).report == "report 1"
    clock.now += 0.1
    assert cache.get(5.0, 10.0).report == "report 2"
    assert compute.calls == 2


def test_a_caller_that_does_not_wait_gets_the_last_report_while_a_round_runs() -> None:
    clock, compute = FakeClock(), BlockingCompute()
    cache = ReportCache(compute, clock)  # type: ignore[arg-type]
    first = cache.get(5.0, 0.0)
    assert first.report is None and first.age_seconds is None  # the round runs in background
    compute.release.set()
    assert cache.get(5.0, 10.0).report == "report 1"
    compute.release.clear()
    clock.now += 10
    assert cache.get(5.0, 0.0).report == "report 1"  # stale, at once; round 2 started
    assert cache.get(5.0, 0.0).report == "report 1"
    compute.release.set()
    assert cache.get(5.0, 10.0).report == "report 2"
    assert compute.calls == 2


def test_a_failed_round_is_reported_and_retried_next_period() -> None:
    from django.core.exceptions import ImproperlyConfigured

    clock = FakeClock()
    calls = []

    def broken() -> Any:
        calls.append(1)
        raise ImproperlyConfigured("NODES['x'] has no HOST")

    cache = ReportCache(broken, clock)
    answer = cache.get(5.0, 10.0)
    assert answer.report is None and "NODES['x'] has no HOST" in (answer.error or "")
    cache.get(5.0, 10.0)
    assert len(calls) == 1
    clock.now += 6
    cache.get(5.0, 10.0)
    assert len(calls) == 2


@pytest.fixture(scope="module")
def probe_database(pg_cluster: LocalCluster) -> str:
    with pg_cluster.primary.connect() as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PROBE_DB]).fetchone():
            conn.execute(f"CREATE DATABASE {PROBE_DB}")
    standby = pg_cluster.standbys[0]
    deadline = time.monotonic() + 30
    while True:  # the standby replays the CREATE DATABASE
        with standby.connect() as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PROBE_DB])
            if found.fetchone():
                return PROBE_DB
        assert time.monotonic() < deadline, "the standby never replayed CREATE DATABASE"
        time.sleep(0.05)


def sessions(node: Any) -> int:
    """Sessions the server has counted for PROBE_DB (counted when each one ends)."""
    rows = node.query("SELECT sessions FROM pg_stat_database WHERE datname = %s", [PROBE_DB])
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


@pytest.fixture
def probed_nodes(
    pg_cluster: LocalCluster, probe_database: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    primary, standby = pg_cluster.primary, pg_cluster.standbys[0]
    monkeypatch.setitem(settings.DATABASES["default"], "HOST", primary.host)
    monkeypatch.setitem(settings.DATABASES["default"], "PORT", str(primary.port))
    monkeypatch.setitem(settings.DATABASES["default"], "NAME", probe_database)
    settings.PG_RESILIENCE = {
        "HEALTH_TOKEN": TOKEN,
        "HEALTH_CACHE_SECONDS": 600.0,
        "NODES": {"replica": node_entry(standby, ROLE="standby", NAME=probe_database)},
    }
    return {"default": primary, "replica": standby}


def probe_count() -> dict[str, float]:
    return dict(stats.snapshot().get("health_probe_connections", {}))


@pytest.mark.parametrize("path", ["/readyz", "/healthz/cluster"])
def test_concurrent_anonymous_requests_make_one_probe_round(
    probed_nodes: dict[str, Any], path: str
) -> None:
    server_before = {name: sessions(node) for name, node in probed_nodes.items()}
    probes_before = probe_count()
    start = threading.Barrier(20)
    statuses: list[int] = []

    def anonymous_get() -> None:
        start.wait(10)
        statuses.append(Client().get(path).status_code)

    callers = [threading.Thread(target=anonymous_get) for _ in range(20)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(30)
    assert statuses == [200] * 20
    assert cluster_report().report is not None  # the round the requests started has ended

    probes = {
        name: probe_count().get(name, 0) - probes_before.get(name, 0) for name in probed_nodes
    }
    assert probes == {"default": 1, "replica": 1}
    # The servers confirm it: poll until they have counted the probe sessions
    # (a session is counted when it ends), then check there is nothing more.
    deadline = time.monotonic() + 10
    while True:
        seen = {name: sessions(node) - server_before[name] for name, node in probed_nodes.items()}
        if seen == probes or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert seen == probes


def test_the_token_holder_gets_the_details_from_the_same_round(
    probed_nodes: dict[str, Any],
) -> None:
    probes_before = probe_count()
    anonymous = Client().get("/healthz/cluster").json()
    detailed = Client().get("/healthz/cluster", headers={"X-Health-Token": TOKEN}).json()
    assert "nodes" not in anonymous and len(detailed["nodes"]) == 2
    assert anonymous["checked_at"] == detailed["checked_at"]
    assert sum(probe_count().values()) - sum(probes_before.values()) == 2


def test_no_setting_makes_rounds_more_frequent_than_the_floor() -> None:
    from django_pg_resilience.health.cache import MIN_ROUND_INTERVAL

    clock, compute = FakeClock(), BlockingCompute()
    compute.release.set()
    cache = ReportCache(compute, clock)  # type: ignore[arg-type]
    assert cache.get(0.0, 10.0).report == "report 1"
    for _ in range(90):  # HEALTH_CACHE_SECONDS = 0, or a token holder's ?fresh=1
        clock.now += MIN_ROUND_INTERVAL / 100
        cache.get(0.0, 10.0)
    assert compute.calls == 1
    clock.now += MIN_ROUND_INTERVAL / 5
    cache.get(0.0, 10.0)
    assert compute.calls == 2  # one more, once the floor had passed


def ok_report() -> Any:
    from datetime import datetime, timezone

    from django_pg_resilience.health import Check, HealthReport, Status, Thresholds

    return HealthReport(
        nodes=[],
        checks=[Check("reachable", Status.OK, "fine")],
        thresholds=Thresholds.from_settings(),
        timeout=1.0,
        checked_at=datetime.now(timezone.utc),
        duration_seconds=0.01,
    )


def test_a_failed_round_marks_the_report_stale_and_an_old_one_expires() -> None:
    from django_pg_resilience.health.readiness import enforced_checks

    clock, outcomes = FakeClock(), [ok_report()]

    def compute() -> Any:
        if outcomes:
            return outcomes.pop()
        raise RuntimeError("the round broke")

    cache = ReportCache(compute, clock)
    first = cache.get(5.0, 10.0).expire_after(30.0)
    assert first.status.name == "OK" and not first.stale and not first.expired

    clock.now += 6  # the next round fails: the report stays, marked stale
    stale = cache.get(5.0, 10.0).expire_after(30.0)
    assert stale.report is first.report and stale.stale and stale.error
    assert stale.age_seconds == 6  # counted from the round that measured, not the one that failed
    assert [c.status.name for c in enforced_checks(["cluster"], stale)] == ["OK"]

    clock.now += 25  # nothing measured for 31 s: the report vouches for nothing
    expired = cache.get(5.0, 10.0).expire_after(30.0)
    assert expired.expired and expired.current is None and expired.status.name == "UNKNOWN"
    [enforced] = enforced_checks(["cluster"], expired)
    assert enforced.status.name == "UNKNOWN" and "31 s old" in enforced.message
