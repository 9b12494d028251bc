"""django-prometheus and our metrics on one backend, through a failover (docs/compatibility.md)."""

from __future__ import annotations

import pytest
from django.db import connections

from django_pg_resilience import stats
from django_pg_resilience.testing import LocalCluster
from tests.backend.conftest import fail_over, item_alias
from tests.testapp.models import Item

prometheus_client = pytest.importorskip("prometheus_client")
pytest.importorskip("django_prometheus")

RECIPE_ENGINE = "tests.prometheus_backend"


def _sample(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


def _metric_names() -> set[str]:
    return {metric.name for metric in prometheus_client.REGISTRY.collect()}


def test_both_sets_of_metrics_are_registered_without_a_clash() -> None:
    import django_prometheus.db.metrics  # noqa: F401  registers django_db_*

    stats.increment("reconnects", "clash-check")  # creates ours, if not yet
    names = _metric_names()
    ours = {f"pg_resilience_{name}" for name in stats.METRICS}
    theirs = {name for name in names if name.startswith("django_db_")}
    assert {"django_db_new_connections", "django_db_execute"} <= theirs
    # prometheus_client drops a duplicate name with ValueError, which stats skips:
    # every one of ours must be there, under its own prefix.
    assert ours <= names
    assert not ours & theirs


def test_a_failover_shows_in_both(cluster: LocalCluster) -> None:
    with item_alias("metered", cluster.endpoint, engine=RECIPE_ENGINE):
        wrapper = connections["metered"]
        assert type(wrapper).__module__ == "tests.prometheus_backend.base"
        Item.objects.using("metered").create(name="before")
        cluster.wait_for_replay(cluster.standbys[0])
        labels = {"alias": "metered", "vendor": "postgresql"}
        connections_before = _sample("django_db_new_connections_total", **labels)
        executed_before = _sample("django_db_execute_total", **labels)
        reconnects_before = _sample("pg_resilience_reconnects_total", alias="metered")

        fail_over(cluster)
        assert list(Item.objects.using("metered").values_list("name", flat=True)) == ["before"]

        assert _sample("django_db_new_connections_total", **labels) == connections_before + 1
        assert _sample("django_db_execute_total", **labels) > executed_before
        assert _sample("pg_resilience_reconnects_total", alias="metered") == reconnects_before + 1
