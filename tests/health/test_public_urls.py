"""The public health URLs, read as an attacker would: a loop of anonymous GETs costs the
database and the DigitalOcean token next to nothing, a broken round does not pass for a
healthy one, and /metrics shows names only to whom the operator says."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from django_pg_resilience import stats
from django_pg_resilience.health import cache as report_cache
from django_pg_resilience.health.cache import MIN_ROUND_INTERVAL
from django_pg_resilience.health.metrics import pseudonym
from django_pg_resilience.health.render import all_prometheus_metrics
from django_pg_resilience.testing import LocalCluster
from tests.health.conftest import node_entry
from tests.health.test_cluster_cache import FakeClock, ok_report
from tests.health.test_digitalocean import CLUSTER, TOKEN, FakeDigitalOcean

HEALTH_TOKEN = "a-long-random-health-token-for-tests"
PUBLIC_URLS = ["/healthz/cluster", "/readyz", "/metrics"]


def rounds() -> float:
    return sum(stats.snapshot().get("health_rounds", {}).values())


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDigitalOcean]:
    fake = FakeDigitalOcean()
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN)
    yield fake
    fake.close()


@pytest.fixture
def public_site(
    pg_cluster: LocalCluster,
    fake_api: FakeDigitalOcean,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> FakeDigitalOcean:
    """The app with the health URLs and /metrics, a real primary and standby, and the
    DigitalOcean check on (a local server counting the requests)."""
    primary = pg_cluster.primary
    monkeypatch.setitem(settings.DATABASES["default"], "HOST", primary.host)
    monkeypatch.setitem(settings.DATABASES["default"], "PORT", str(primary.port))
    monkeypatch.setitem(settings.DATABASES["default"], "NAME", "postgres")
    settings.ROOT_URLCONF = "tests.health.metrics_urls"
    settings.PG_RESILIENCE = {
        "HEALTH_TOKEN": HEALTH_TOKEN,
        # The worst an operator can write: no reuse at all.
        "HEALTH_CACHE_SECONDS": 0.0,
        "DIGITALOCEAN_API_URL": fake_api.url,
        "DIGITALOCEAN_CLUSTER": CLUSTER,
        "NODES": {"replica": node_entry(pg_cluster.standbys[0], ROLE="standby")},
    }
    return fake_api


@pytest.mark.parametrize("path", PUBLIC_URLS)
def test_a_thousand_anonymous_gets_cost_one_round_per_interval_and_no_api_call_beyond_its_cache(
    public_site: FakeDigitalOcean, path: str
) -> None:
    client = Client()
    rounds_before = rounds()
    started = time.monotonic()
    statuses = {client.get(path).status_code for _ in range(1000)}
    elapsed = time.monotonic() - started
    made = rounds() - rounds_before
    asked = len(public_site.authorizations)

    assert statuses <= {200, 503}
    # HEALTH_CACHE_SECONDS = 0 still means one round per MIN_ROUND_INTERVAL at most.
    assert 1 <= made <= elapsed / MIN_ROUND_INTERVAL + 1, (made, elapsed)
    # Each asking of DigitalOcean is 2 requests (cluster, events), kept 60 s.
    assert asked <= 2 * (elapsed // 60 + 1), (asked, elapsed)
    print(f"{path}: 1000 GETs in {elapsed:.1f} s, {made:g} rounds, {asked} DigitalOcean requests")


def test_a_token_holder_may_ask_for_a_fresh_round_but_not_more_than_the_floor(
    public_site: FakeDigitalOcean, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, "HEALTH_CACHE_SECONDS": 600.0}
    clock = FakeClock()
    monkeypatch.setattr(report_cache._cache, "_clock", clock)
    report_cache._cache.clear()
    client = Client(headers={"X-Health-Token": HEALTH_TOKEN})
    first = client.get("/healthz/cluster").json()
    clock.now += 2 * MIN_ROUND_INTERVAL
    again = client.get("/healthz/cluster").json()
    assert again["checked_at"] == first["checked_at"]  # reused: 600 s
    before = rounds()
    forced = [client.get("/healthz/cluster?fresh=1").json() for _ in range(20)]
    # A fresh round for the first; the others within the floor reuse it.
    assert rounds() - before <= 2
    assert forced[0]["checked_at"] != first["checked_at"]
    assert len({answer["checked_at"] for answer in forced}) <= 2
    # An anonymous ?fresh=1 is just a read of the cache.
    before = rounds()
    Client().get("/healthz/cluster?fresh=1")
    assert rounds() == before
    # The provider was asked once whatever the rounds: its answer is kept 60 s.
    assert len(public_site.authorizations) == 2


@pytest.fixture
def round_that_breaks(settings: Any, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The process's report cache with a fake clock and rounds that work once, then raise."""
    settings.ROOT_URLCONF = "tests.health.metrics_urls"
    settings.PG_RESILIENCE = {"HEALTH_TOKEN": HEALTH_TOKEN, "READINESS_ENFORCE": ["cluster"]}
    outcomes = [ok_report()]

    def compute() -> Any:
        if outcomes:
            return outcomes.pop()
        raise RuntimeError("the round broke")

    clock = FakeClock()
    monkeypatch.setattr(report_cache._cache, "_compute", compute)
    monkeypatch.setattr(report_cache._cache, "_clock", clock)
    report_cache._cache.clear()
    return clock


def test_a_round_that_raises_does_not_keep_an_old_ok_fresh(round_that_breaks: FakeClock) -> None:
    clock, anonymous = round_that_breaks, Client()
    token = Client(headers={"X-Health-Token": HEALTH_TOKEN})
    assert anonymous.get("/readyz").status_code == 200

    clock.now += 6  # HEALTH_CACHE_SECONDS passed: the next round raises
    assert anonymous.get("/readyz").status_code == 200  # within HEALTH_MAX_REPORT_AGE
    detailed = token.get("/healthz/cluster").json()
    assert detailed["stale"] is True and "RuntimeError" in detailed["error"]

    clock.now += 30  # nothing measured for 36 s (HEALTH_MAX_REPORT_AGE: 30)
    readiness = anonymous.get("/readyz")
    assert readiness.status_code == 503 and readiness.json()["database"] == "UNKNOWN"
    cluster = anonymous.get("/healthz/cluster")
    assert cluster.status_code == 503 and cluster.json()["status"] == "UNKNOWN"
    detailed = token.get("/healthz/cluster").json()
    assert detailed["status"] == "UNKNOWN" and detailed["stale"] is True
    assert "36 s old" in detailed["summary"]
    metrics = anonymous.get("/metrics").content.decode()
    assert "pg_resilience_health_status 3.0" in metrics


# --- names on /metrics ---


def cluster_labels(text: str) -> dict[str, set[str]]:
    """{label name: values} over the cluster gauges of a scrape."""
    gauges = {f"pg_resilience_{name}" for name in all_prometheus_metrics()}
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        if family.name in gauges:
            for sample in family.samples:
                for key, value in sample.labels.items():
                    found.setdefault(key, set()).add(value)
    return found


@pytest.fixture
def scraped_site(public_site: FakeDigitalOcean, settings: Any) -> Any:
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, "HEALTH_CACHE_SECONDS": 600.0}

    def scrape(**headers: str) -> str:
        return Client(headers=headers).get("/metrics").content.decode()

    return scrape


def test_an_anonymous_scrape_sees_pseudonyms_and_the_token_holder_names(
    scraped_site: Any, settings: Any
) -> None:
    anonymous = scraped_site()
    labels = cluster_labels(anonymous)
    assert labels["node"] >= {pseudonym("default"), pseudonym("replica")}
    assert labels["cluster"] == {pseudonym(CLUSTER)}
    assert labels.get("slot", set()) <= {pseudonym(s) for s in _slots(scraped_site)}
    assert not labels["node"] & {"default", "replica"}
    for name in (CLUSTER, "walreceiver"):
        assert name not in anonymous

    named = cluster_labels(scraped_site(Authorization=f"Bearer {HEALTH_TOKEN}"))
    assert named["node"] >= {"default", "replica"} and named["cluster"] == {CLUSTER}
    assert cluster_labels(scraped_site(X_Health_Token=HEALTH_TOKEN))["cluster"] == {CLUSTER}
    assert cluster_labels(scraped_site(Authorization="Bearer wrong"))["cluster"] != {CLUSTER}

    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, "HEALTH_METRICS_NAMES": "never"}
    with_token = scraped_site(Authorization=f"Bearer {HEALTH_TOKEN}")
    assert cluster_labels(with_token)["cluster"] == {pseudonym(CLUSTER)}
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, "HEALTH_METRICS_NAMES": "always"}
    assert cluster_labels(scraped_site())["cluster"] == {CLUSTER}


def _slots(scrape: Any) -> set[str]:
    named = cluster_labels(scrape(Authorization=f"Bearer {HEALTH_TOKEN}"))
    return named.get("slot", set())


def test_a_cache_longer_than_the_report_age_does_not_keep_an_expired_report(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ROOT_URLCONF = "tests.health.metrics_urls"
    settings.PG_RESILIENCE = {"HEALTH_CACHE_SECONDS": 600.0, "HEALTH_MAX_REPORT_AGE": 30.0}
    computed: list[Any] = []

    def compute() -> Any:
        computed.append(ok_report())
        return computed[-1]

    clock = FakeClock()
    monkeypatch.setattr(report_cache._cache, "_compute", compute)
    monkeypatch.setattr(report_cache._cache, "_clock", clock)
    report_cache._cache.clear()
    assert Client().get("/healthz/cluster").status_code == 200
    clock.now += 31  # the report expired long before HEALTH_CACHE_SECONDS would renew it
    assert Client().get("/healthz/cluster").status_code == 200
    assert len(computed) == 2
