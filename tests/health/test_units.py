"""Pure units: status order, targets and masking, thresholds, flags, system checks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_pg_resilience.checks import check_health
from django_pg_resilience.health import Status, Thresholds
from django_pg_resilience.health.probe import connect_params
from django_pg_resilience.health.status import worst
from django_pg_resilience.health.targets import masked_dsn, node_targets
from django_pg_resilience.management.commands.health import _ratio, write_atomically


def test_worst_ranks_critical_over_unknown_over_warning() -> None:
    assert worst([Status.OK, Status.WARNING]) is Status.WARNING
    assert worst([Status.WARNING, Status.UNKNOWN]) is Status.UNKNOWN
    assert worst([Status.UNKNOWN, Status.CRITICAL, Status.OK]) is Status.CRITICAL
    assert worst([]) is Status.OK
    assert [int(s) for s in Status] == [0, 1, 2, 3]


def test_masked_dsn_hides_passwords() -> None:
    text = masked_dsn({"host": "db", "port": "5432", "password": "hunter2", "sslpassword": "x1y2"})
    assert "hunter2" not in text and "x1y2" not in text
    assert "host=db" in text and "password=********" in text


def test_nodes_from_dsn_uri_and_multi_host_dict() -> None:
    targets = node_targets(
        {
            "ro": "postgresql://app:s3cret@ro.example.com:25061/defaultdb?sslmode=require",
            "pair": {"HOST": "h1,h2", "PORT": "5432,5433", "USER": "u", "ROLE": "primary"},
        }
    )
    ro, first, second = targets
    assert ro.name == "ro" and ro.host == "ro.example.com" and ro.port == "25061"
    assert ro.params["password"] == "s3cret" and "s3cret" not in ro.dsn and "s3cret" not in repr(ro)
    assert ro.scrub("FATAL: s3cret rejected") == "FATAL: ******** rejected"
    assert (first.name, second.name) == ("pair@h1:5432", "pair@h2:5433")
    assert first.group == second.group == "pair" and first.group_size == 2
    assert first.expected_role == "primary"


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (42, "must be a connection string or a DATABASES-style dict"),
        ({"HOST": "h", "ROLE": "leader"}, "use 'primary', 'standby'"),
        ({"HOST": "h1,h2,h3", "PORT": "1,2"}, "3 hosts but 2 ports"),
        ("host=h password=oops-Secret badkey=1", "not a valid libpq connection string"),
    ],
)
def test_bad_node_entries_say_how_to_fix(entry: Any, words: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=words) as info:
        node_targets({"n": entry})
    assert "oops-Secret" not in str(info.value)


def test_connect_params_bound_every_wait() -> None:
    params = connect_params(
        {"host": "h", "options": "-c search_path=app", "target_session_attrs": "read-write"}, 0.5
    )
    assert params["connect_timeout"] == 2  # libpq's minimum; the thread deadline does the rest
    assert params["options"] == ("-c search_path=app -c statement_timeout=500 -c lock_timeout=500")
    assert "target_session_attrs" not in params
    assert params["tcp_user_timeout"] == 1500 and params["keepalives"] == 1


def test_thresholds_from_settings_and_overrides(settings: Any) -> None:
    settings.PG_RESILIENCE = {"HEALTH_LAG_WARNING": 3, "HEALTH_REQUIRE_STANDBY": False}
    thresholds = Thresholds.from_settings(lag_critical=9.0, connections_warning=None)
    assert thresholds.lag_warning == 3.0 and thresholds.lag_critical == 9.0
    assert thresholds.connections_warning == 0.8
    assert thresholds.require_standby is False


def test_connection_flags_take_percent_or_ratio() -> None:
    assert _ratio("80") == pytest.approx(0.8)
    assert _ratio("80%") == pytest.approx(0.8)
    assert _ratio("0.9") == pytest.approx(0.9)
    with pytest.raises(argparse.ArgumentTypeError):
        _ratio("150")
    with pytest.raises(argparse.ArgumentTypeError):
        _ratio("-1")


def test_write_atomically_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "x.prom"
    target.write_text("old\n")
    write_atomically(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.prom"]


def test_system_checks(settings: Any) -> None:
    settings.PG_RESILIENCE = {
        "NODES": {"bad": 1},
        "DIGITALOCEAN_API_URL": "http://api.digitalocean.com",
        "READINESS_ENFORCE": ["reachable", "no_such_check"],
        "HEALTH_LAG_WARNING": 60.0,
        "HEALTH_LAG_CRITICAL": 10.0,
        "HEALTH_CONNECTIONS_CRITICAL": 95,
        "HEALTH_TOKEN": "short",
    }
    ids = sorted(message.id or "" for message in check_health())
    assert ids == [
        "pg_resilience.E401",
        "pg_resilience.E402",
        "pg_resilience.E403",
        "pg_resilience.W401",
        "pg_resilience.W401",
        "pg_resilience.W402",
    ]
    settings.PG_RESILIENCE = {
        "HEALTH_TOKEN": "x" * 32,
        "READINESS_ENFORCE": ["reachable", "cluster"],
        "DIGITALOCEAN_API_URL": "http://127.0.0.1:8080",
    }
    assert check_health() == []
