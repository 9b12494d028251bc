"""Our cluster checks on the real django-health-check's page and JSON, from the cached report.

Runs against whichever line is installed: 4.x with Django 5.2+, 3.24+ with Django 4.2 (CI runs
both).
"""

from __future__ import annotations

import html
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from django_pg_resilience import stats
from django_pg_resilience.contrib.health_check import LEGACY_PLUGINS
from django_pg_resilience.testing import LocalCluster, free_port
from tests.health.conftest import node_entry
from tests.live_server import live_server

OVERALL = "ClusterHealth(check=None)"
REACHABLE = "ClusterHealth(check='reachable')"


def get(url: str, accept: str = "text/html") -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": accept})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def health_check_site(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    settings.INSTALLED_APPS = [
        *settings.INSTALLED_APPS,
        "health_check",
        "django_pg_resilience.contrib.health_check",
    ]
    settings.ROOT_URLCONF = "tests.health.health_check_urls"
    # Only the nodes named in each test are probed.
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.postgresql")
    with live_server() as url:
        yield url


def test_a_healthy_cluster_is_ok_on_the_page_and_in_the_json(
    health_check_site: str, pg_cluster: LocalCluster, settings: Any
) -> None:
    settings.PG_RESILIENCE = {
        "HEALTH_CACHE_SECONDS": 600.0,
        "NODES": {
            "main": node_entry(pg_cluster.primary, ROLE="primary"),
            "replica": node_entry(pg_cluster.standbys[0], ROLE="standby"),
        },
    }
    before = dict(stats.snapshot().get("health_probe_connections", {}))
    status, page = get(health_check_site + "/ht/")
    assert status == 200
    assert html.escape(OVERALL) in page and html.escape(REACHABLE) in page
    assert page.count(">OK<") >= 2 or page.count("OK") >= 2
    for _ in range(3):
        status, body = get(health_check_site + "/ht/?format=json")
        assert status == 200
        assert json.loads(body) == {OVERALL: "OK", REACHABLE: "OK"}
    after = stats.snapshot()["health_probe_connections"]
    # One probe round for four requests and two checks each: the cached report.
    assert {name: after[name] - before.get(name, 0) for name in ("main", "replica")} == {
        "main": 1,
        "replica": 1,
    }


def test_an_unreachable_database_fails_both_checks_without_showing_where(
    health_check_site: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    default = settings.DATABASES["default"]
    monkeypatch.setitem(default, "ENGINE", "django_pg_resilience.backend")
    monkeypatch.setitem(default, "PORT", str(port))
    settings.PG_RESILIENCE = {"HEALTH_REQUIRE_STANDBY": False}
    status, body = get(health_check_site + "/ht/", accept="application/json")
    assert status == 500
    verdicts = {check: text.lower() for check, text in json.loads(body).items()}
    assert verdicts == {  # 3.x writes "unavailable", 4.x "Unavailable"
        OVERALL: "unavailable: critical (see manage.py health)",
        REACHABLE: "unavailable: critical (see manage.py health)",
    }
    assert str(port) not in body
    if not LEGACY_PLUGINS:  # 3.x plugins take no per-view options
        status, detail = get(health_check_site + "/ht/detail/?format=json")
        assert status == 500 and "default: unreachable" in detail
