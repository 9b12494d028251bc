"""Which errors send a task back to Celery, and after how long (pure units: no database)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, OperationalError

from django_pg_resilience.contrib.celery.tasks import retry_countdown, should_retry
from django_pg_resilience.errors import (
    CommitUnknownError,
    DatabaseUnavailable,
    FailoverError,
)


@pytest.mark.parametrize(
    "error",
    [
        DatabaseUnavailable("down", retry_after=2.0),
        FailoverError("lost mid-transaction"),
        CommitUnknownError("lost during COMMIT"),
    ],
)
def test_outages_and_uncertain_commits_are_retried(error: Exception) -> None:
    assert should_retry(error)


@pytest.mark.parametrize(
    "error",
    [ValueError("a bug"), IntegrityError("duplicate key"), OperationalError("syntax")],
)
def test_other_errors_fail_the_task(error: Exception) -> None:
    assert not should_retry(error)


def test_the_countdown_is_retry_after_plus_up_to_half_of_it() -> None:
    countdowns = [retry_countdown(DatabaseUnavailable("down", retry_after=2.0)) for _ in range(200)]
    assert all(2.0 <= c <= 3.0 for c in countdowns)
    assert len(set(countdowns)) > 100  # jittered, not one value for every task


def test_without_retry_after_the_countdown_starts_at_the_retry_after_setting(
    settings: object,
) -> None:
    settings.PG_RESILIENCE = {"RETRY_AFTER": 7}  # type: ignore[attr-defined]
    assert 7.0 <= retry_countdown(FailoverError("lost")) <= 10.5


def test_the_decorator_says_what_is_wrong_with_its_options() -> None:
    from django_pg_resilience.contrib.celery import idempotent_task

    with pytest.raises(TypeError, match="a function of the task's arguments"):
        idempotent_task(key="fulfil-order")
    with pytest.raises(TypeError, match="binds the task itself"):
        idempotent_task(key=lambda order_id: order_id, bind=True)


def test_the_decorator_defaults_to_acks_late_and_requeue_on_a_lost_worker() -> None:
    from tests.jobs.jobs import place_order

    assert place_order.acks_late and place_order.reject_on_worker_lost
    assert place_order.max_retries == 20
    assert place_order.name == "tests.jobs.jobs.place_order"
