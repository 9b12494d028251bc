"""Parked jobs: written once per task with a signal, a metric and a log line; replayed by staff."""

from __future__ import annotations

import base64
import datetime
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.utils import timezone

from django_pg_resilience import signals, stats
from django_pg_resilience.contrib.celery.models import ParkedJob
from django_pg_resilience.contrib.celery.parking import describe_error, park, replay
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias

pytestmark = pytest.mark.django_db

ADMIN_URL = "/admin/pg_resilience_celery/parkedjob/"


def park_one(task_id: str = "task-1", **overrides: Any) -> tuple[ParkedJob, bool]:
    fields: dict[str, Any] = {
        "task": "tests.jobs.jobs.place_order",
        "task_id": task_id,
        "args": [41],
        "kwargs": {},
        "key": "27:tests.jobs.jobs.place_order,10:place-order,2:41,",
        "queue": "celery",
        "first_failure": timezone.now() - datetime.timedelta(hours=1),
        "last_error": "DatabaseUnavailable: Database 'jobs' is unavailable",
        **overrides,
    }
    return park(**fields)


@pytest.fixture
def parked_signals() -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        received.append(kwargs)

    signals.job_parked.connect(receiver)
    yield received
    signals.job_parked.disconnect(receiver)


def test_a_job_parks_once_per_task_id_with_a_signal_a_metric_and_a_log_line(
    parked_signals: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    before = stats.snapshot().get("jobs_parked", {}).get("tests.jobs.jobs.place_order", 0)
    with caplog.at_level(logging.ERROR, logger="django_pg_resilience.celery"):
        first, created = park_one()
        # The same message delivered again (a worker died after parking it): one row.
        again, created_again = park_one()
    assert created and not created_again and again.pk == first.pk
    assert ParkedJob.objects.count() == 1
    assert [s["task_id"] for s in parked_signals] == ["task-1"]
    assert parked_signals[0]["key"].endswith("10:place-order,2:41,")
    after = stats.snapshot()["jobs_parked"]["tests.jobs.jobs.place_order"]
    assert after == before + 1
    (line,) = [r.getMessage() for r in caplog.records if "parked" in r.getMessage()]
    assert "task-1" in line and "JOB_OUTAGE_BUDGET" in line


def test_errors_are_stored_with_the_database_passwords_masked(
    pg_cluster: LocalCluster,
) -> None:
    secret = "s3cret-Pa55"
    with database_alias("masked", pg_cluster.primary, PASSWORD=f" {secret} "):
        text = describe_error(
            RuntimeError(
                f"connection to 'db' failed: password={secret} user=x; "
                f"also postgres://app:{secret}@db:25060/shop and {secret}"
            )
        )
    assert secret not in text and text.count("***") == 3
    assert describe_error(RuntimeError("x" * 5000)).endswith("…")
    # Passwords in connection strings are masked even when not configured here.
    assert "hunter2" not in describe_error(RuntimeError("password='hunter2' host=x"))


def staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="pg_resilience_celery", codename__in=codenames
        )
    )
    return user


def queued(broker: str) -> list[dict[str, Any]]:
    """The task messages waiting in the default queue (headers: task, id; body: args)."""
    client = redis.Redis.from_url(f"{broker}/0")
    messages = []
    for raw in client.lrange("celery", 0, -1):
        message = json.loads(raw)
        headers = message["headers"]
        body = json.loads(base64.b64decode(message["body"]))
        messages.append({"task": headers["task"], "id": headers["id"], "args": body[0]})
    return messages


@override_settings(ROOT_URLCONF="tests.webhooks.urls_admin")
def test_view_only_staff_see_parked_jobs_and_cannot_replay_them(
    client: Client, redis_broker: str
) -> None:
    from tests.jobs.app import app

    app.control.purge()
    job, _ = park_one()
    client.force_login(staff("viewer", "view_parkedjob"))
    listing = client.get(ADMIN_URL)
    assert listing.status_code == 200 and b"task-1" in listing.content
    assert b"replay_selected" not in listing.content
    client.post(ADMIN_URL, {"action": "replay_selected", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.replayed_at is None and queued(redis_broker) == []


@override_settings(ROOT_URLCONF="tests.webhooks.urls_admin")
def test_staff_with_the_replay_permission_send_each_parked_job_once(
    client: Client, redis_broker: str
) -> None:
    from tests.jobs.app import app

    app.control.purge()
    job, _ = park_one()
    client.force_login(staff("operator", "view_parkedjob", "replay_parkedjob"))
    assert b"replay_selected" in client.get(ADMIN_URL).content
    response = client.post(
        ADMIN_URL, {"action": "replay_selected", "_selected_action": [job.pk]}, follow=True
    )
    assert b"1 jobs replayed" in response.content
    job.refresh_from_db()
    assert job.replayed_at is not None and job.replay_task_id
    assert queued(redis_broker) == [
        {"task": "tests.jobs.jobs.place_order", "id": job.replay_task_id, "args": [41]}
    ]
    # Selected again (a double click, a second operator): not sent twice.
    again = replay([job])
    assert again.sent == {} and again.skipped == 1
    assert len(queued(redis_broker)) == 1
    app.control.purge()
