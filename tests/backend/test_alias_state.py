"""One state per alias: everything the process knows of an alias, and one reset for it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connections
from django.test import override_settings

from django_pg_resilience import stats
from django_pg_resilience.backend import alias as alias_states
from django_pg_resilience.backend.alias import AliasState, alias_state
from django_pg_resilience.backend.identity import ServerIdentity
from django_pg_resilience.backend.liveness import ConnectionWatch
from django_pg_resilience.errors import DatabaseUnavailable
from django_pg_resilience.retry import atomic_with_retry
from django_pg_resilience.testing import LocalCluster, reset_process_state
from tests.backend.conftest import item_alias
from tests.testapp.models import Item


def _dirty(state: AliasState) -> None:
    """Put something in every part of the state."""
    budget = state.settings.retry_policy.start()
    state.breaker.record_failure("direct", ConnectionRefusedError(), budget)
    state.identity.observe(ServerIdentity("1", "00000001", "127.0.0.1", 5432))
    state.identity.observe(ServerIdentity("1", "00000002", "127.0.0.1", 5433))
    state.pool_drain_pending = True
    state.busy.refused(
        OSError("sorry, too many clients already"), "127.0.0.1:5432", state.settings.busy_policy
    )
    state.use_probe(lambda timeout: None)


class _Monitor:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_reset_clears_everything_the_process_knows_of_an_alias() -> None:
    state = alias_state("default")
    _dirty(state)
    monitor = state.replica_monitor = _Monitor()
    assert state.breaker.outage_since is not None
    assert state.identity.epoch == 1 and state.identity.has_baseline()
    assert state.busy.refusals == 1

    reset_process_state()

    fresh = alias_state("default")
    assert fresh is not state
    assert fresh.breaker.state == "closed" and fresh.breaker.outage_since is None
    assert fresh.identity.epoch == 0 and not fresh.identity.has_baseline()
    assert fresh.pool_drain_pending is False
    assert fresh.replica_monitor is None and monitor.closed  # the router's measurements too
    assert fresh.busy.refusals == 0 and not fresh.busy.active
    assert fresh.busy.seconds_to_retry() == 0.0
    assert fresh.prober is None
    assert fresh.connect_slots.in_use == 0 and fresh.connect_slots.peak == 0
    # Every part is the alias's own: the liveness monitor judges with this breaker and identity.
    assert fresh.liveness._breaker is fresh.breaker
    assert fresh.liveness._identity is fresh.identity
    assert stats.snapshot().get("busy_errors", {}) == {}


def test_a_setting_change_gives_the_alias_a_fresh_state_with_the_new_settings() -> None:
    before = alias_state("default")
    options = {"connect_timeout": 2, "resilience": {"breaker_threshold": 3, "deadline": 1.5}}
    with override_settings(PG_RESILIENCE={"CONNECT_CONCURRENCY": 5}):
        during = alias_state("default", {"OPTIONS": options})
        assert during is not before
        assert during.settings.breaker_threshold == 3
        assert during.breaker.settings.threshold == 3  # the breaker is built with them
        assert during.settings.deadline == 1.5
        assert during.connect_slots.limit == 5
    assert alias_state("default") is not during


def test_the_prober_of_a_reset_state_stops() -> None:
    state = alias_state("default")
    state.use_probe(lambda timeout: None)
    assert state.prober is not None
    alias_states.reset("default")
    assert state.prober._stopped.is_set()


def test_liveness_failures_open_the_breaker_at_the_aliases_own_threshold() -> None:
    """The liveness monitor records into the alias's breaker, with its threshold and cool-down
    (it used a default BreakerSettings(), which never opens on a threshold)."""
    options = {"resilience": {"breaker_threshold": 1}}
    state = alias_state("liveness_threshold", {"OPTIONS": options})
    try:

        def refused(timeout: float) -> Any:
            raise ConnectionRefusedError("the endpoint is gone")

        watch = ConnectionWatch(
            monitor=state.liveness,
            opened_at=time.monotonic(),
            liveness_after=0.1,
            liveness_interval=0.1,
            connect=refused,
            epoch=state.identity.epoch,
        )
        reason = state.liveness.verdict(4242, watch)
        assert reason == "the endpoint did not answer a fresh connection"
        assert state.breaker.state == "open"  # threshold 1: one failure opens it
    finally:
        alias_states.reset("liveness_threshold")


def test_a_unit_of_work_keeps_its_deadline_through_the_reconnects_inside_it(
    cluster: LocalCluster,
) -> None:
    """atomic_with_retry(deadline=1) against a silent endpoint returns after one connect
    attempt (2 s, libpq's smallest connect_timeout), not after the alias's own 4 s deadline
    of reconnects: the unit's budget is the operation's."""
    with item_alias("unit_deadline", cluster.endpoint):
        Item.objects.using("unit_deadline").count()
        connections["unit_deadline"].close()
        cluster.endpoint.blackhole()

        @atomic_with_retry(using="unit_deadline", deadline=1.0)
        def unit() -> int:
            return Item.objects.using("unit_deadline").count()

        attempts_before = stats.snapshot().get("connect_attempts", {}).get("unit_deadline", 0)
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            unit()
        elapsed = time.monotonic() - started
        attempts = stats.snapshot()["connect_attempts"]["unit_deadline"] - attempts_before
    assert attempts == 1  # before the fix: a second 2 s attempt, within the alias's 4 s
    # 1 s + one connect timeout; the old code took the alias's whole 4 s deadline.
    assert elapsed < 1.0 + 2.0 + 0.9


def test_threads_share_one_state_per_alias() -> None:
    seen: list[AliasState] = []
    threads = [
        threading.Thread(target=lambda: seen.append(alias_state("shared"))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(state) for state in seen}) == 1
    alias_states.reset("shared")
