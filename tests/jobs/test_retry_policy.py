"""Which errors send a job back to the queue, and when (pure units: no database, no broker)."""

from __future__ import annotations

import random
import statistics

import psycopg
import pytest
from celery.app.task import Context
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, IntegrityError, OperationalError
from psycopg_pool import PoolTimeout

from django_pg_resilience import conf
from django_pg_resilience.contrib.celery.outage import (
    OUTAGE_SINCE_HEADER,
    OutageBudgetExceeded,
    OutagePolicy,
)
from django_pg_resilience.contrib.celery.tasks import (
    OUTAGE_RETRIES_HEADER,
    outage_policy,
    outage_since,
    should_retry,
)
from django_pg_resilience.errors import CommitUnknownError, DatabaseUnavailable, FailoverError


def wrapped(
    driver_error: Exception, django_class: type[DatabaseError] = OperationalError
) -> Exception:
    """A driver error as Django raises it (``raise dj_exc from exc``)."""
    error = django_class(str(driver_error))
    error.__cause__ = driver_error
    return error


@pytest.mark.parametrize(
    "error",
    [
        DatabaseUnavailable("down", retry_after=0.7),
        FailoverError("lost mid-transaction"),
        CommitUnknownError("lost during COMMIT"),
        wrapped(PoolTimeout("no connection in 30 s")),
        wrapped(psycopg.errors.SerializationFailure("could not serialize"), DatabaseError),
        wrapped(psycopg.errors.DeadlockDetected("deadlock detected"), DatabaseError),
    ],
    ids=["down", "failover", "commit-unknown", "busy-pool", "40001", "40P01"],
)
def test_outages_busy_databases_uncertain_commits_and_conflicts_are_retried(
    error: Exception,
) -> None:
    assert should_retry(error)


@pytest.mark.parametrize(
    "error",
    [ValueError("a bug"), IntegrityError("duplicate key"), OperationalError("syntax")],
)
def test_other_errors_fail_the_task(error: Exception) -> None:
    assert not should_retry(error)


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_first_retry_comes_within_a_second() -> None:
    clock = FakeClock()
    for draw in (0.0, 0.5, 1.0):
        policy = OutagePolicy(clock=clock, random=lambda draw=draw: draw)
        assert 0.75 <= policy.countdown(clock.now) <= 1.0


def test_each_wait_is_three_quarters_to_three_times_the_outage_so_far_then_capped() -> None:
    clock = FakeClock()
    since = clock.now
    low, high = (
        OutagePolicy(clock=clock, random=lambda: 0.0),
        OutagePolicy(clock=clock, random=lambda: 1.0),
    )
    clock.now = since + 10
    assert (low.countdown(since), high.countdown(since)) == (22.5, 30.0)
    clock.now = since + 600
    assert (low.countdown(since), high.countdown(since)) == (45.0, 60.0)


def test_the_last_wait_lands_on_the_budget_and_then_it_is_exhausted() -> None:
    clock = FakeClock()
    since = clock.now
    policy = OutagePolicy(budget=100.0, cap=60.0, clock=clock, random=lambda: 1.0)
    clock.now = since + 90
    assert policy.countdown(since) == pytest.approx(10.0)
    assert not policy.exhausted(since)
    clock.now = since + 100
    assert policy.exhausted(since) and policy.countdown(since) == 0.0
    assert 45.0 <= policy.wait_to_park() <= 60.0


def messages_in_outage(outage: float, cap: float, rng: random.Random) -> int:
    """The tries one job makes while an outage of ``outage`` s lasts (the first one included)."""
    clock = FakeClock(0.0)
    policy = OutagePolicy(cap=cap, clock=clock, random=rng.random)
    tries = 1
    while True:
        clock.now += policy.countdown(0.0)
        if clock.now >= outage:
            return tries
        tries += 1


@pytest.mark.parametrize("outage", [240.0, 300.0, 600.0, 3600.0])
def test_messages_per_job_stay_within_two_per_cap_of_outage_plus_one(outage: float) -> None:
    rng = random.Random(22)
    counts = [messages_in_outage(outage, 60.0, rng) for _ in range(2000)]
    bound = 2 * outage / 60.0 + 1
    # The documented bound for a fleet of jobs (docs/celery.md); a job's own
    # count is random, the sum over many jobs is what the broker sees.
    assert statistics.fmean(counts) <= bound, (statistics.fmean(counts), bound)


def test_jobs_that_failed_together_spread_their_retries() -> None:
    rng = random.Random(7)
    policy = OutagePolicy(random=rng.random, clock=FakeClock(1000.0))
    waits = [policy.countdown(0.0) for _ in range(500)]  # 1000 s into the outage: at the cap
    assert min(waits) >= 45.0 and max(waits) <= 60.0
    assert max(waits) - min(waits) > 12.0


def test_the_outage_start_is_read_from_the_message_only_while_it_is_the_same_outage() -> None:
    request = Context({OUTAGE_SINCE_HEADER: 1234.5, OUTAGE_RETRIES_HEADER: 2, "retries": 2})
    assert outage_since(request) == 1234.5
    # Celery's counter moved: another kind of retry happened since; a new outage starts.
    assert (
        outage_since(Context({OUTAGE_SINCE_HEADER: 1234.5, OUTAGE_RETRIES_HEADER: 1, "retries": 2}))
        is None
    )
    assert outage_since(Context({"retries": 0})) is None
    assert outage_since(Context({OUTAGE_SINCE_HEADER: "garbled", OUTAGE_RETRIES_HEADER: 0})) is None


def test_the_budget_and_cap_come_from_the_settings(settings: object) -> None:
    settings.PG_RESILIENCE = {"JOB_OUTAGE_BUDGET": 30, "JOB_OUTAGE_RETRY_CAP": 5}  # type: ignore[attr-defined]
    policy = outage_policy()
    assert (policy.budget, policy.cap) == (30.0, 5.0)
    settings.PG_RESILIENCE = {}  # type: ignore[attr-defined]
    assert (outage_policy().budget, outage_policy().cap) == (3600.0, 60.0)


def test_a_cap_under_a_second_is_refused_with_the_fix(settings: object) -> None:
    settings.PG_RESILIENCE = {"JOB_OUTAGE_RETRY_CAP": 0.1}  # type: ignore[attr-defined]
    with pytest.raises(ImproperlyConfigured, match=r"JOB_OUTAGE_RETRY_CAP.*at least 1"):
        conf.app_settings()


def test_the_budget_exception_reaches_the_caller_as_itself_through_json_results() -> None:
    from celery.backends.base import Backend

    from tests.jobs.app import app

    backend = Backend(app, serializer="json")
    stored = backend.prepare_exception(OutageBudgetExceeded("shop.fulfil_order[abc]: parked"))
    error = backend.exception_to_python(stored)
    assert isinstance(error, OutageBudgetExceeded)
    assert str(error) == "shop.fulfil_order[abc]: parked"


def test_the_decorator_says_what_is_wrong_with_its_options() -> None:
    from django_pg_resilience.contrib.celery import idempotent_task

    with pytest.raises(TypeError, match="a function of the task's arguments"):
        idempotent_task(key="fulfil-order")
    with pytest.raises(TypeError, match="binds the task itself"):
        idempotent_task(key=lambda order_id: order_id, bind=True)


def test_the_decorator_defaults_to_acks_late_requeue_and_celerys_own_max_retries() -> None:
    from tests.jobs.jobs import place_order

    assert place_order.acks_late and place_order.reject_on_worker_lost
    # Counts the task's other failures only: outages are bounded by JOB_OUTAGE_BUDGET.
    assert place_order.max_retries == 3
    assert place_order.name == "tests.jobs.jobs.place_order"
