"""System checks of the health endpoints' settings: each bad value is named, with the fix."""

from __future__ import annotations

from typing import Any

import pytest

from django_pg_resilience.checks.health import check_health_endpoints


def ids(settings: Any, **values: Any) -> list[str]:
    settings.PG_RESILIENCE = values
    return [message.id or "" for message in check_health_endpoints()]


def test_the_defaults_pass(settings: Any) -> None:
    assert ids(settings) == []
    assert ids(settings, DIGITALOCEAN_CLUSTER="9cc10173", HEALTH_METRICS_NAMES="always") == []


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"HEALTH_METRICS_NAMES": "yes"}, "pg_resilience.E406"),
        ({"HEALTH_CACHE_SECONDS": 0.0, "HEALTH_MAX_REPORT_AGE": 60.0}, "pg_resilience.W404"),
        ({"HEALTH_MAX_REPORT_AGE": 5.0}, "pg_resilience.W405"),
        ({"HEALTH_CACHE_SECONDS": 30.0}, "pg_resilience.W405"),  # longer than the bound
        ({"DIGITALOCEAN_CLUSTER": "9cc10173", "DIGITALOCEAN_CACHE_SECONDS": 5.0},
         "pg_resilience.W406"),
    ],
)  # fmt: skip
def test_each_mistake_is_named_with_a_hint(
    settings: Any, values: dict[str, Any], expected: str
) -> None:
    settings.PG_RESILIENCE = values
    [message] = check_health_endpoints()
    assert message.id == expected
    assert message.hint


def test_the_report_age_check_counts_the_providers_round(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5 s of cache + 4 x 2 s of DigitalOcean requests (node metrics on) = 13 s.
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "dop_v1_token")
    assert ids(settings, DIGITALOCEAN_CLUSTER="9cc10173", HEALTH_MAX_REPORT_AGE=12.0) == [
        "pg_resilience.W405"
    ]
    assert ids(settings, DIGITALOCEAN_CLUSTER="9cc10173", HEALTH_MAX_REPORT_AGE=14.0) == []


def test_a_wrong_names_setting_hides_the_names_at_run_time(settings: Any) -> None:
    from django_pg_resilience.health.access import metrics_names_shown

    settings.PG_RESILIENCE = {"HEALTH_METRICS_NAMES": "yes"}
    assert metrics_names_shown(token_given=True) is False
    settings.PG_RESILIENCE = {"HEALTH_METRICS_NAMES": "token"}
    assert metrics_names_shown(token_given=True) is True
    assert metrics_names_shown(token_given=False) is False
