"""WAL positions and the lag arithmetic (pure)."""

from __future__ import annotations

import math

import pytest

from django_pg_resilience.routers.positions import format_lsn, parse_lsn
from django_pg_resilience.routers.status import ReplicaStatus, replay_lag


@pytest.mark.parametrize("text", ["0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "0/3000148"])
def test_positions_round_trip(text: str) -> None:
    position = parse_lsn(text)
    assert position is not None
    assert format_lsn(position) == text


def test_positions_compare_across_the_high_word() -> None:
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")  # type: ignore[operator]


@pytest.mark.parametrize("text", [None, "", "0", "1/2/3", "G/0", "100000000/0", "-1/0"])
def test_anything_else_is_no_position(text: str | None) -> None:
    assert parse_lsn(text) is None


def test_an_idle_primary_is_no_lag() -> None:
    # Nothing committed for an hour, but the replica has everything the primary has.
    assert replay_lag(replay=500, reference=500, seconds_since_replayed_commit=3600.0) == 0.0


def test_behind_the_primary_the_lag_is_the_age_of_the_last_replayed_commit() -> None:
    assert replay_lag(replay=400, reference=500, seconds_since_replayed_commit=0.7) == 0.7


def test_nothing_replayed_is_infinitely_behind() -> None:
    assert replay_lag(replay=None, reference=500, seconds_since_replayed_commit=None) == math.inf
    assert replay_lag(replay=400, reference=500, seconds_since_replayed_commit=None) == math.inf


def test_a_replica_has_replayed_a_position_only_when_past_it() -> None:
    status = ReplicaStatus("r", 0.0, in_recovery=True, replay_position=500, lag=0.0)
    assert status.has_replayed(None)
    assert status.has_replayed(500)
    assert not status.has_replayed(501)
    assert not ReplicaStatus("r", 0.0, error="OperationalError").has_replayed(1)
