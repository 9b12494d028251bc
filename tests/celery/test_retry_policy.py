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
