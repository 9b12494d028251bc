"""The async worker: runs ``handle()`` for pending events, each exactly once.

One event per transaction: the row is taken with ``FOR UPDATE SKIP LOCKED`` (so
concurrent workers never wait on, or take, the same event), the handler runs
in a savepoint, and the event is marked succeeded in the same transaction as
the handler's writes. A handler error rolls back the savepoint only, and the
attempt is recorded with a backoff; after ``max_attempts`` the event is failed.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from django_pg_resilience import signals, stats
from django_pg_resilience.errors import is_availability_error
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.webhooks import processing
from django_pg_resilience.webhooks.views import load_handler

__all__ = ["WorkerResult", "backoff_delay", "process_due", "process_one"]

logger = logging.getLogger("django_pg_resilience.webhooks")

Status = WebhookEvent.Status

#: The longest wait between two attempts, in seconds.
MAX_BACKOFF = 3600.0


@dataclass
class WorkerResult:
    """What one pass of the worker did."""

    succeeded: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.succeeded + self.retried + self.failed


def backoff_delay(attempts: int, base: float) -> float:
    """Seconds before attempt ``attempts + 1``: ``base`` doubled per attempt, capped."""
    return float(min(MAX_BACKOFF, base * 2 ** max(0, attempts - 1)))


def process_one(
    using: str, *, max_attempts: int, backoff: float, now: datetime.datetime | None = None
) -> Status | None:
    """Process the next due pending event; its new status, or None when none is due."""
    with transaction.atomic(using=using):
        event = (
            WebhookEvent.objects.using(using)
            .select_for_update(skip_locked=True)
            .filter(status=Status.PENDING, next_attempt_at__lte=now or timezone.now())
            .order_by("next_attempt_at", "pk")
            .first()
        )
        if event is None:
            return None
        event.attempts += 1
        try:
            handle = load_handler(event.handler)
            with transaction.atomic(using=using):
                processing.run_handler(event, handle, using, count_attempt=False)
            return Status(Status.SUCCEEDED)
        except Exception as exc:
            if is_availability_error(exc):
                raise  # the transaction is gone with the connection: nothing to record
            return _record_attempt_failure(event, exc, using, max_attempts, backoff)


def _record_attempt_failure(
    event: WebhookEvent, exc: Exception, using: str, max_attempts: int, backoff: float
) -> Status:
    error = processing.describe_error(exc)
    event.last_error = error
    if event.attempts >= max_attempts:
        event.status = Status.FAILED
        event.next_attempt_at = None
        stats.increment("webhooks_failed", event.source)
        signals.webhook_failed.send(
            sender=WebhookEvent, source=event.source, key=event.key, topic=event.topic, error=error
        )
        logger.error(
            "webhook %s %s failed after %d attempts: %s",
            event.source,
            event.key,
            event.attempts,
            error,
        )
    else:
        event.status = Status.PENDING
        event.next_attempt_at = timezone.now() + datetime.timedelta(
            seconds=backoff_delay(event.attempts, backoff)
        )
        logger.warning(
            "webhook %s %s attempt %d failed: %s", event.source, event.key, event.attempts, error
        )
    event.save(using=using, update_fields=["status", "attempts", "next_attempt_at", "last_error"])
    return Status(event.status)


def process_due(
    using: str, *, max_attempts: int, backoff: float, limit: int | None = None
) -> WorkerResult:
    """Process due pending events until none is left (or ``limit`` were taken)."""
    result = WorkerResult()
    while limit is None or result.total < limit:
        status = process_one(using, max_attempts=max_attempts, backoff=backoff)
        if status is None:
            break
        if status == Status.SUCCEEDED:
            result.succeeded += 1
        elif status == Status.FAILED:
            result.failed += 1
        else:
            result.retried += 1
    return result
