"""Parked jobs: written when a job's outage budget runs out, replayed by an operator.

::

    from django_pg_resilience.contrib.celery.parking import replay

    replay(ParkedJob.objects.filter(replayed_at=None))  # what the admin action does

A parked job did not take effect (or its effect committed without the job
learning it: its job key then makes the replay a no-op that returns the stored
outcome). Parking is idempotent per Celery task id: a redelivered message that
parks again finds its row.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, router, transaction
from django.utils import timezone

from django_pg_resilience import signals, stats
from django_pg_resilience.contrib.celery.models import ParkedJob

__all__ = ["ReplayResult", "describe_error", "park", "replay"]

logger = logging.getLogger("django_pg_resilience.celery")

#: Longest ``last_error`` kept, in characters.
ERROR_LIMIT = 2000
MASK = "***"

# A password inside a connection string or a DSN echoed by a driver message.
_PASSWORD_IN_TEXT = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE)
_PASSWORD_IN_URL = re.compile(r"(\w+://[^:/@\s]*:)([^@\s]+)(@)")


def _database_secrets() -> list[str]:
    found: set[str] = set()
    for settings_dict in settings.DATABASES.values():
        options: Mapping[str, Any] = settings_dict.get("OPTIONS") or {}  # type: ignore[assignment]
        for value in (
            settings_dict.get("PASSWORD"),
            options.get("password"),
            options.get("sslpassword"),
        ):
            if isinstance(value, str) and value.strip():
                # Also the stripped form: a driver may echo what it was given after trimming.
                found.update({value, value.strip()})
    # Longest first: a secret that contains another is masked whole.
    return sorted(found, key=len, reverse=True)


def describe_error(exc: BaseException | None) -> str:
    """``Type: message``, truncated, with the databases' passwords masked."""
    if exc is None:
        return ""
    text = f"{type(exc).__name__}: {exc}"
    for secret in _database_secrets():
        text = text.replace(secret, MASK)
    text = _PASSWORD_IN_TEXT.sub(rf"\g<1>{MASK}", text)
    text = _PASSWORD_IN_URL.sub(rf"\g<1>{MASK}\g<3>", text)
    if len(text) > ERROR_LIMIT:
        text = text[: ERROR_LIMIT - 1] + "…"
    return text


def _alias() -> str:
    return router.db_for_write(ParkedJob) or DEFAULT_DB_ALIAS


def park(
    *,
    task: str,
    task_id: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    key: str,
    queue: str,
    first_failure: datetime.datetime,
    last_error: str,
) -> tuple[ParkedJob, bool]:
    """Record a job whose budget ran out; ``(row, created)``. Availability errors propagate.

    The signal, the log line and the metric come once, with the row that was created.
    """
    parked, created = ParkedJob.objects.using(_alias()).get_or_create(
        task_id=task_id,
        defaults={
            "task": task[:255],
            "args": list(args),
            "kwargs": dict(kwargs),
            "key": key[:255],
            "queue": queue[:255],
            "first_failure": first_failure,
            "last_error": last_error,
            "parked_at": timezone.now(),
        },
    )
    if created:
        stats.increment("jobs_parked", task)
        logger.error(
            "task %s[%s] parked: the database was unavailable since %s, past JOB_OUTAGE_BUDGET; "
            "replay it from the admin (parked job %s). Last error: %s",
            task,
            task_id,
            first_failure.isoformat(),
            parked.pk,
            last_error,
        )
        signals.job_parked.send(
            sender=ParkedJob,
            task=task,
            task_id=task_id,
            key=key,
            first_failure=first_failure,
            error=last_error,
        )
    return parked, created


@dataclass
class ReplayResult:
    """What :func:`replay` did: parked job pk -> new task id, and the errors."""

    sent: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    #: Selected jobs already replayed (by someone else meanwhile, or before).
    skipped: int = 0


def _send(job: ParkedJob, app: Any) -> str:
    from celery import current_app

    app = app or current_app
    options: dict[str, Any] = {"queue": job.queue} if job.queue else {}
    registered = app.tasks.get(job.task)
    if registered is not None:
        result = registered.apply_async(args=job.args, kwargs=job.kwargs, **options)
    else:
        # This process does not import the task (a web process): send it by name.
        result = app.send_task(job.task, args=job.args, kwargs=job.kwargs, **options)
    return str(result.id)


def replay(
    jobs: Iterable[ParkedJob] | Iterable[int], *, using: str | None = None, app: Any = None
) -> ReplayResult:
    """Send each parked job again as a new task (a new outage budget); mark it replayed.

    Each row is locked while its task is sent, so two operators replaying at
    once send it once. A row whose sending failed (the broker is down) stays
    unreplayed. If the mark fails to commit after the task was sent, a second
    replay sends it again: the job key makes the second run a no-op.

    ``using``: the database of the parked jobs (default: the router's choice);
    ``app``: the Celery app to send with (default: the current one).
    """
    alias = using or _alias()
    result = ReplayResult()
    pks = [job.pk if isinstance(job, ParkedJob) else int(job) for job in jobs]
    for pk in pks:
        try:
            with transaction.atomic(using=alias):
                job = (
                    ParkedJob.objects.using(alias)
                    .select_for_update()
                    .filter(pk=pk, replayed_at=None)
                    .first()
                )
                if job is None:
                    result.skipped += 1
                    continue
                job.replay_task_id = _send(job, app)
                job.replayed_at = timezone.now()
                job.save(using=alias, update_fields=["replay_task_id", "replayed_at"])
        except Exception as exc:
            result.errors[pk] = describe_error(exc)
            logger.warning("replaying parked job %s failed: %s", pk, result.errors[pk])
            continue
        result.sent[pk] = job.replay_task_id
        logger.info("parked job %s (%s) replayed as task %s", pk, job.task, job.replay_task_id)
    return result
