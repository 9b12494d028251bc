"""System checks of the node-metrics and PgBouncer settings: each says what to fix."""

from __future__ import annotations

from typing import Any

from django_pg_resilience.checks import check_node_metrics_and_pgbouncers


def ids(settings: Any, **values: Any) -> list[str]:
    settings.PG_RESILIENCE = values
    return [message.id or "" for message in check_node_metrics_and_pgbouncers()]


def test_good_settings_pass(settings: Any, tmp_path: Any) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert (
        ids(
            settings,
            PGBOUNCERS={"sidecar": "host=10.0.0.5 port=6432 user=stats"},
            DIGITALOCEAN_METRICS_CA=str(ca),
        )
        == []
    )


def test_each_mistake_is_named(settings: Any) -> None:
    assert ids(settings, PGBOUNCERS={"bad": "host=x port"}) == ["pg_resilience.E404"]
    assert ids(settings, DIGITALOCEAN_METRICS_CA="/nonexistent/ca.pem") == ["pg_resilience.E405"]
    assert ids(settings, HEALTH_NODE_DISK_WARNING=0.95, HEALTH_NODE_DISK_CRITICAL=0.9) == [
        "pg_resilience.W403"
    ]
    assert ids(settings, HEALTH_NODE_CPU_CRITICAL=95) == ["pg_resilience.W403"]
