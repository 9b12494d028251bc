"""An open circuit never makes a request wait: its probes run in the prober's own thread."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connections

from django_pg_resilience.backend import connection as connection_module
from django_pg_resilience.backend.alias import alias_state
from django_pg_resilience.backoff import RetryPolicy
from django_pg_resilience.breaker import PROBE, BreakerSettings, CircuitBreaker
from django_pg_resilience.errors import DatabaseUnavailable
from django_pg_resilience.testing import LocalCluster
from tests.backend.conftest import item_alias
from tests.testapp.models import Item

OPTIONS = {"resilience": {"deadline": 0.3, "breaker_open_interval": 0.2}}


def wait_until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_requests_never_carry_the_open_circuits_probe(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialled_by: list[str] = []
    real_connect = connection_module.ResilientConnection.connect

    def spy(*args: Any, **kwargs: Any) -> Any:
        dialled_by.append(threading.current_thread().name)
        return real_connect(*args, **kwargs)

    with item_alias("probed", cluster.endpoint, OPTIONS=OPTIONS):
        Item.objects.using("probed").count()
        connections["probed"].close()
        cluster.endpoint.blackhole()  # a silent node: every dial waits its whole timeout
        with pytest.raises(DatabaseUnavailable):
            Item.objects.using("probed").count()  # the outage outlives the deadline: open
        breaker = alias_state("probed").breaker
        assert breaker.state == "open"

        monkeypatch.setattr(connection_module.ResilientConnection, "connect", spy)
        refused = 0
        for _ in range(200):
            with pytest.raises(DatabaseUnavailable):
                Item.objects.using("probed").count()
            refused += 1
        prober = alias_state("probed").prober
        assert prober is not None
        wait_until(lambda: prober.probes >= 1)
        assert refused == 200
        callers = [name for name in dialled_by if not name.startswith("pg-resilience-prober")]
        assert callers == []  # only the prober dialled while the circuit was open

        cluster.endpoint.restore()
        wait_until(lambda: breaker.state == "closed")
        assert Item.objects.using("probed").count() == 0


def test_the_prober_ends_when_the_circuit_closes() -> None:
    breaker = CircuitBreaker(
        "t", BreakerSettings(open_interval=0.05, max_interval=0.05, idle_interval=0.05)
    )
    outcomes = iter([ConnectionRefusedError("down"), None])

    def probe(timeout: float) -> None:
        error = next(outcomes)
        if error is not None:
            raise error

    from django_pg_resilience.backend.prober import BackgroundProber

    prober = BackgroundProber(breaker, probe, timeout=1.0)
    breaker.background_probe = prober.ensure_running
    policy = RetryPolicy(deadline=0.0, max_attempts=1)
    breaker.record_failure("direct", ConnectionRefusedError("down"), policy.start())
    assert breaker.state == "open"
    prober.ensure_running()  # what opening the circuit does
    wait_until(lambda: breaker.state == "closed", timeout=10)
    assert prober.probes == 2
    thread = prober._thread
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive()


def test_a_held_outage_slows_its_probes_after_the_fast_window() -> None:
    """Past ``young_outage`` the probes of a held outage are at least half the holding
    interval apart: <= 2 / interval attempts per second per process."""
    now = [0.0]
    breaker = CircuitBreaker(
        "t",
        BreakerSettings(young_outage=1.0, holding_interval=0.25),
        clock=lambda: now[0],
        rand=lambda: 0.0,  # the shortest waits the jitter can draw
    )
    policy = RetryPolicy(
        deadline=60.0, base=0.05, cap=0.05, clock=lambda: now[0], random=lambda: 0.0
    )
    budget = policy.start()
    gaps = []
    while now[0] < 3.0:
        breaker.record_failure(PROBE, ConnectionRefusedError(), budget)
        gap = breaker.retry_after()
        gaps.append((now[0], gap))
        now[0] += max(gap, 0.01)
    young = [gap for at, gap in gaps if at < 1.0]
    held = [gap for at, gap in gaps if at >= 1.0]
    assert young and all(gap < 0.05 for gap in young)  # fast while the outage is young
    assert held and all(gap >= 0.125 for gap in held)  # then at most 8 attempts a second


def test_an_open_circuit_is_probed_for_callers_that_want_it_and_rarely_otherwise() -> None:
    """An idle process does not keep dialling a database that is away; one whose callers
    are refused probes at the open interval (a worker polling each second: at most one a
    second)."""
    now = [0.0]
    breaker = CircuitBreaker(
        "t",
        BreakerSettings(open_interval=1.0, max_interval=1.0, idle_interval=10.0),
        clock=lambda: now[0],
        rand=lambda: 1.0,
    )
    breaker.background_probe = lambda: None  # a prober's breaker: callers never probe
    policy = RetryPolicy(deadline=0.0, max_attempts=1, clock=lambda: now[0])
    breaker.record_failure("direct", ConnectionRefusedError(), policy.start())
    assert breaker.state == "open"

    now[0] = 100.0
    assert breaker.try_probe()  # nobody asked, but ten idle seconds have passed
    breaker.record_failure(PROBE, ConnectionRefusedError(), None)
    now[0] = 102.0
    assert breaker.seconds_to_next_probe() == (8.0, True)  # idle: the next in 10 s, or sooner
    assert not breaker.try_probe()

    with pytest.raises(DatabaseUnavailable):
        breaker.admit(policy.start())  # a caller refused: it wants the database
    assert breaker.seconds_to_next_probe() == (0.0, False)
    assert breaker.try_probe()
    breaker.record_failure(PROBE, ConnectionRefusedError(), None)
    now[0] = 102.5
    with pytest.raises(DatabaseUnavailable):
        breaker.admit(policy.start())
    assert not breaker.try_probe()  # wanted, but the open interval has not passed
    now[0] = 103.0
    assert breaker.try_probe()
