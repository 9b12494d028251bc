"""The cluster report and the package's counters on a live app's /metrics (real scrapes)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from django_pg_resilience import stats
from django_pg_resilience.health.metrics import pseudonym
from django_pg_resilience.testing import LocalCluster
from tests.health.conftest import node_entry
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "a-long-random-health-token-for-tests"


def scrape_text(base_url: str, headers: dict[str, str] | None = None) -> str:
    request = urllib.request.Request(base_url + "/metrics", headers=headers or {})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return str(response.read().decode())


def scrape(
    base_url: str, token: str | None = None
) -> dict[str, list[tuple[dict[str, str], float]]]:
    """{sample name: [(labels, value)]} of one GET /metrics (``token``: as Prometheus
    sends it with ``authorization: {credentials: ...}``)."""
    text = scrape_text(base_url, {"Authorization": f"Bearer {token}"} if token else None)
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        found.setdefault(family.name, [])
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(scraped: dict[str, Any], name: str, **labels: str) -> float:
    matches = [
        v for sample_labels, v in scraped.get(name, []) if labels.items() <= sample_labels.items()
    ]
    assert len(matches) == 1, f"{name}{labels}: {scraped.get(name)}"
    return float(matches[0])


@pytest.fixture
def live_app(
    pg_cluster: LocalCluster, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    primary = pg_cluster.primary
    monkeypatch.setitem(settings.DATABASES["default"], "HOST", primary.host)
    monkeypatch.setitem(settings.DATABASES["default"], "PORT", str(primary.port))
    monkeypatch.setitem(settings.DATABASES["default"], "NAME", "postgres")
    settings.ROOT_URLCONF = "tests.health.metrics_urls"
    settings.PG_RESILIENCE = {
        "HEALTH_TOKEN": TOKEN,
        "HEALTH_CACHE_SECONDS": 600.0,
        "NODES": {"replica": node_entry(pg_cluster.standbys[0], ROLE="standby")},
    }
    with live_server() as url:
        yield url


def test_a_scrape_shows_the_cluster_and_the_counters(live_app: str) -> None:
    scraped = scrape(live_app, TOKEN)
    assert value(scraped, "pg_resilience_health_status") == 0
    assert value(scraped, "pg_resilience_up", node="default") == 1
    assert value(scraped, "pg_resilience_is_primary", node="default") == 1
    assert value(scraped, "pg_resilience_is_primary", node="replica") == 0
    assert value(scraped, "pg_resilience_standbys_streaming", node="default") == 1
    assert value(scraped, "pg_resilience_synchronous_lossless", node="default") == 0
    assert value(scraped, "pg_resilience_synchronous_standbys", node="default") == 0
    assert value(scraped, "pg_resilience_standby_wal_receiver_streaming", node="replica") == 1
    assert "pg_resilience_replication_lag_seconds" in scraped
    assert "pg_resilience_replication_lag_bytes" in scraped
    assert "pg_resilience_standby_replay_lag_bytes" in scraped
    # The package's counters are listed before their first event, with _total.
    for name in ("pool_timeouts", "connect_failures", "webhooks_signature_failures"):
        assert f"pg_resilience_{name}" in scraped
    # Nothing of ours is named like django-prometheus' django_db_* (which this
    # process exports as well once django_prometheus has been imported).
    assert not [
        name
        for name in scraped
        if name.startswith("django_db_") and _family(name) not in _django_prometheus()
    ]


def _family(sample: str) -> str:
    """The metric family a sample name belongs to (prometheus_client's suffixes removed)."""
    for suffix in ("_total", "_created", "_bucket", "_count", "_sum"):
        sample = sample.removesuffix(suffix)
    return sample


def _django_prometheus() -> set[str]:
    """The base names of django-prometheus' database metrics, if it is loaded."""
    import sys

    module = sys.modules.get("django_prometheus.db.metrics")
    if module is None:
        return set()
    names = {getattr(metric, "_name", "") for metric in vars(module).values()}
    return {_family(name) for name in names if name}


def test_concurrent_scrapes_make_one_probe_round(live_app: str) -> None:
    before = dict(stats.snapshot().get("health_probe_connections", {}))
    results: list[float] = []
    start = threading.Barrier(8)

    def scraper() -> None:
        start.wait(10)
        results.append(value(scrape(live_app, TOKEN), "pg_resilience_up", node="replica"))

    threads = [threading.Thread(target=scraper) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [1.0] * 8
    after = stats.snapshot()["health_probe_connections"]
    assert {name: after[name] - before.get(name, 0) for name in ("default", "replica")} == {
        "default": 1,
        "replica": 1,
    }


def test_lazy_registration_is_race_free() -> None:
    """Two threads bumping their first metric at once both get every metric, once."""
    script = """
import threading
import prometheus_client
from django_pg_resilience import stats

barrier = threading.Barrier(2, timeout=1)
local = threading.local()
real_counter = prometheus_client.Counter

def counter(*args, **kwargs):
    if not getattr(local, "waited", False):
        local.waited = True  # hold both threads inside the registration, if they can get there
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
    return real_counter(*args, **kwargs)

prometheus_client.Counter = counter
got = []
def register():
    got.append(stats._prometheus_metrics())

threads = [threading.Thread(target=register) for _ in range(2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len(got[0]), len(got[1]), got[0] is got[1], len(stats.METRICS))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    first, second, same, expected = done.stdout.split()
    assert (first, second, same) == (expected, expected, "True")


# --- under gunicorn with PROMETHEUS_MULTIPROC_DIR ---


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310
        return str(response.read().decode())


@pytest.fixture
def gunicorn_app(pg_cluster: LocalCluster, tmp_path: Path) -> Iterator[str]:
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.health.metrics_settings",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "HEALTH_TEST_HOST": pg_cluster.primary.host,
        "HEALTH_TEST_PORT": str(pg_cluster.primary.port),
        "HEALTH_TEST_NODES": json.dumps(
            {"replica": node_entry(pg_cluster.standbys[0], ROLE="standby")}
        ),
    }
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
         "django.core.wsgi:get_wsgi_application()"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError):
            _get(url + "/healthz")
            break
        assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
        assert time.monotonic() < deadline, "gunicorn did not start"
        time.sleep(0.1)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def test_multiprocess_scrape_under_gunicorn(gunicorn_app: str) -> None:
    pids: set[str] = set()
    requests = 0
    lock = threading.Lock()
    deadline = time.monotonic() + 30

    def bump() -> None:
        nonlocal requests
        while time.monotonic() < deadline:
            pid = _get(gunicorn_app + "/count")
            with lock:
                pids.add(pid)
                requests += 1
                if len(pids) == 2 and requests >= 20:
                    return

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(pids) == 2, "one worker answered every request"
    _get(gunicorn_app + "/open-breaker")

    scraped = scrape(gunicorn_app)
    # Counters add up across the workers; the breaker gauge is one series, not one per pid.
    assert (
        value(scraped, "pg_resilience_webhooks_signature_failures_total", source="test") == requests
    )
    assert scraped["pg_resilience_breaker_open"] == [({"alias": "test"}, 1.0)]
    # The cluster gauges were written by the worker that answered the scrape, with
    # pseudonyms: every scrape reads the files, names are there only with "always".
    assert value(scraped, "pg_resilience_health_status") == 0
    assert value(scraped, "pg_resilience_up", node=pseudonym("replica")) == 1
    assert value(scraped, "pg_resilience_is_primary", node=pseudonym("default")) == 1
    assert [labels for labels, _ in scraped["pg_resilience_up"] if "pid" in labels] == []


def test_before_the_first_round_only_the_unknown_status_is_exported() -> None:
    from django_pg_resilience.health.cache import CachedReport
    from django_pg_resilience.health.metrics import samples

    assert samples(CachedReport(None, "configuration error")) == [
        ("pg_resilience_health_status", {}, 3.0)
    ]
