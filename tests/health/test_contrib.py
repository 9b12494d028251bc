"""The shipped alerting rules and Grafana dashboard: valid, tested, and about real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import django_pg_resilience
from django_pg_resilience import stats
from tests.health.test_digitalocean import CLUSTER, TOKEN, FakeDigitalOcean
from tests.health.test_metrics import scrape
from tests.live_server import live_server

CONTRIB = Path(django_pg_resilience.__file__).parent / "contrib"
RULES = CONTRIB / "prometheus" / "alerts.yml"
RULE_TESTS = CONTRIB / "prometheus" / "alerts_test.yml"
DASHBOARD = CONTRIB / "grafana" / "dashboard.json"
METRIC_NAME = re.compile(r"\bpg_resilience_[a-z0-9_]+")
DURATION = re.compile(r"^\d+[smhdwy]$")
#: The package's own counters and gauges: on /metrics from the start, with values after
#: their first event.
PACKAGE_METRICS = {f"pg_resilience_{name}" for name in stats.METRICS}


def rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_the_rule_file_has_the_prometheus_rule_file_shape() -> None:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    names = set()
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "limit", "rules"} and group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert isinstance(rule["alert"], str) and re.fullmatch(
                r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]
            )
            assert isinstance(rule["expr"], str) and METRIC_NAME.search(rule["expr"])
            assert "for" not in rule or DURATION.match(rule["for"])
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert all(isinstance(v, str) for v in rule["annotations"].values())
            assert (
                "Runbook: docs/metrics.md, Alerts runbook, " + rule["alert"]
                in rule["annotations"]["description"]
            )
            names.add(rule["alert"])
    assert len(names) == len(rules())  # no alert defined twice


def test_every_alert_has_a_runbook_paragraph_in_the_docs() -> None:
    page = (CONTRIB.parents[1] / "docs" / "metrics.md").read_text()
    runbook = page[page.index("## Alerts runbook") :]
    for rule in rules():
        assert f"**`{rule['alert']}`**" in runbook, rule["alert"]


def test_the_dashboard_is_grafana_json() -> None:
    document = json.loads(DASHBOARD.read_text())
    assert document["title"] and document["uid"] and document["panels"]
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    for panel in document["panels"]:
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["targets"] and all(METRIC_NAME.search(t["expr"]) for t in panel["targets"])


@pytest.fixture
def app_with_provider(live_app_settings: Any) -> Iterator[str]:
    with live_server() as url:
        yield url


@pytest.fixture
def live_app_settings(
    pg_cluster: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    from tests.health.conftest import node_entry

    fake = FakeDigitalOcean()
    primary = pg_cluster.primary
    monkeypatch.setitem(settings.DATABASES["default"], "HOST", primary.host)
    monkeypatch.setitem(settings.DATABASES["default"], "PORT", str(primary.port))
    monkeypatch.setitem(settings.DATABASES["default"], "NAME", "postgres")
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN)
    settings.ROOT_URLCONF = "tests.health.metrics_urls"
    settings.PG_RESILIENCE = {
        "NODES": {"replica": node_entry(pg_cluster.standbys[0], ROLE="standby")},
        "DIGITALOCEAN_CLUSTER": CLUSTER,
        "DIGITALOCEAN_API_URL": fake.url,
    }
    yield
    fake.close()


def test_every_metric_in_the_rules_and_the_dashboard_is_exported(app_with_provider: str) -> None:
    scraped = scrape(app_with_provider)
    named = {
        name
        for text in [rule["expr"] for rule in rules()] + dashboard_expressions()
        for name in METRIC_NAME.findall(text)
    }
    missing = sorted(
        name for name in named if name not in scraped and name.removesuffix("_total") not in scraped
    )
    assert not missing, f"not on /metrics: {missing}"
    # The cluster's gauges have values now; the package's metrics wait for their first event.
    empty = sorted(
        n for n in named - PACKAGE_METRICS if not n.endswith("_total") and not scraped[n]
    )
    assert not empty, f"no samples: {empty}"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is missing: install Debian's prometheus package "
            "(apt-get install prometheus; python3 tests/run.py does it when run as root)"
        )
    return found


def test_promtool_check_rules(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_of_every_alert(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == {rule["alert"] for rule in rules()}
