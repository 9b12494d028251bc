"""The async worker: runs ``handle()`` for pending events, each exactly once.

Each event is first leased in a short transaction of its own: status
``processing``, ``attempts + 1`` and ``locked_until`` are committed *before*
the handler runs, so whatever happens next (the handler raises, a database of
its own is down, the worker is killed) the attempt is counted and the event is
not first in line again. The row is taken with ``FOR UPDATE SKIP LOCKED``
(concurrent workers never wait on, or take, the same event).

The handler then runs in a second transaction that locks the row again and
checks the lease is still ours; the event is marked succeeded there, with the
handler's writes. A handler error rolls that transaction back and the failure
is recorded with a jittered backoff; after ``max_attempts`` the event is
failed. A worker that died leaves its lease; once ``locked_until`` passes,
another worker takes the event (or fails it if it has no attempts left). Only
an error of the worker's own connection (the failure cannot be recorded)
propagates.

An outage is not an attempt: when the handler's transaction fails because a
database is unavailable (down, busy, an uncertain commit), the attempt is given
back (``attempts - 1``, ``pending``). If that works, the worker's own database
answers (the outage was another database's, or is already over): the event is
due again after half to all of ``backoff``, and the pass goes on with the
others. If the worker's own database is the one away, the attempt cannot be
given back yet: :class:`AttemptInterrupted` carries it, the caller waits the
outage out and gives the attempt back with :func:`give_back` once the database
answers (``process_webhooks`` on its next pass, the Celery task on its retry).
"""

from __future__ import annotations

import datetime
import logging
import random
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from django_pg_resilience import conf, signals, stats
from django_pg_resilience.backoff import RetryPolicy
from django_pg_resilience.errors import DatabaseUnavailable, is_availability_error
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.webhooks import processing

__all__ = [
    "AttemptInterrupted",
    "WorkerResult",
    "backoff_delay",
    "give_back",
    "outage_wait",
    "process_due",
    "process_one",
]

logger = logging.getLogger("django_pg_resilience.webhooks")

Status = WebhookEvent.Status

#: The longest wait between two attempts, in seconds.
MAX_BACKOFF = 3600.0

#: ``last_error`` of an event whose worker stopped while handling it.
LEASE_EXPIRED = "the worker stopped while handling this event (its lease expired)"
#: ``last_error`` of an event whose attempt an outage interrupted (not counted).
GIVEN_BACK = "the database was unavailable during this attempt; it was not counted"

#: Seconds a worker waits between two tries while the database is away: at
#: most one try a second, and back within the cap of the database answering.
OUTAGE_WAIT = (1.0, 1.5)


class AttemptInterrupted(DatabaseUnavailable):
    """An outage interrupted attempt ``attempts`` of event ``pk``, and the database is away.

    Give it back with :func:`give_back` once the database answers; until then
    the event stays leased (``processing``), and if no one gives it back its
    lease expires as if its worker had died (the attempt then counts).
    """

    def __init__(self, pk: int, attempts: int, *, alias: str) -> None:
        super().__init__(
            f"the database went away during attempt {attempts} of webhook event {pk}; "
            "give the attempt back once it answers",
            alias=alias,
        )
        self.pk = pk
        self.attempts = attempts


def outage_wait() -> float:
    """Seconds to wait before the next try while the database is away (jittered)."""
    return random.uniform(*OUTAGE_WAIT)


def give_back(
    using: str, pk: int, attempts: int, error: str = GIVEN_BACK, *, due_in: float = 0.0
) -> bool:
    """Hand back attempt ``attempts`` of event ``pk``, if the event still holds it.

    The event becomes ``pending``, due in ``due_in`` seconds, with one attempt
    fewer. False when another worker has taken it since (its lease expired) or
    it is done.
    """
    updated = (
        WebhookEvent.objects.using(using)
        .filter(pk=pk, status=Status.PROCESSING, attempts=attempts)
        .update(
            status=Status.PENDING,
            attempts=max(attempts - 1, 0),
            locked_until=None,
            next_attempt_at=timezone.now() + datetime.timedelta(seconds=due_in),
            last_error=error,
        )
    )
    return bool(updated)


@dataclass
class WorkerResult:
    """What one pass of the worker did."""

    succeeded: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.succeeded + self.retried + self.failed


def _policy(base: float) -> RetryPolicy:
    # Full jitter spreads the retries of events that failed together (a
    # downstream outage) instead of retrying them all at the same instant.
    return RetryPolicy(base=base, cap=MAX_BACKOFF, jitter=True)


def backoff_delay(attempts: int, base: float) -> float:
    """The longest wait before attempt ``attempts + 1``: ``base`` doubled per attempt, capped.

    The wait itself is drawn uniformly below it (full jitter).
    """
    return _policy(base).step(attempts)


def _lease(
    using: str, lease: float, now: datetime.datetime, pk: int | None = None
) -> tuple[WebhookEvent, bool] | None:
    """Take the next due event (or one whose worker died) and commit the attempt.

    With ``pk``: that event, if it is pending (a queue asked for it by name) or
    its worker died. The event, and whether its previous lease had expired.
    """
    if pk is None:
        due = Q(status=Status.PENDING, next_attempt_at__lte=now)
    else:
        due = Q(pk=pk, status=Status.PENDING)
    expired_lease = Q(status=Status.PROCESSING, locked_until__lte=now)
    if pk is not None:
        expired_lease &= Q(pk=pk)
    with transaction.atomic(using=using):
        event = (
            WebhookEvent.objects.using(using)
            .select_for_update(skip_locked=True)
            .filter(due | expired_lease)
            .order_by("next_attempt_at", "pk")
            .first()
        )
        if event is None:
            return None
        expired = event.status == Status.PROCESSING
        if expired:
            event.last_error = LEASE_EXPIRED
            logger.warning("webhook %s %s: %s", event.source, event.key, LEASE_EXPIRED)
        event.status = Status.PROCESSING
        event.attempts += 1
        event.locked_until = now + datetime.timedelta(seconds=lease)
        # Ordering among due events: a lease that expires is due then.
        event.next_attempt_at = event.locked_until
        event.save(
            using=using,
            update_fields=["status", "attempts", "locked_until", "next_attempt_at", "last_error"],
        )
    return event, expired


def process_one(
    using: str,
    *,
    max_attempts: int,
    backoff: float,
    now: datetime.datetime | None = None,
    lease: float | None = None,
    pk: int | None = None,
) -> Status | None:
    """Process the next due event; its new status, or None when none is due.

    ``lease``: seconds the event is held (``WEBHOOK_WORKER_LEASE`` by default).
    ``pk``: process that event only (a task queue's hand-over).
    """
    if lease is None:
        lease = conf.app_settings().WEBHOOK_WORKER_LEASE
    leased = _lease(using, lease, now or timezone.now(), pk)
    if leased is None:
        return None
    event, expired = leased
    if expired and event.attempts > max_attempts:
        return _record_attempt_failure(event, None, [], using, max_attempts, backoff)
    secrets: list[str] = []
    try:
        view = processing.load_view(event.handler)
        secrets = processing.view_secrets(view)
        with transaction.atomic(using=using):
            held = (
                WebhookEvent.objects.using(using)
                .select_for_update()
                .filter(pk=event.pk, status=Status.PROCESSING, attempts=event.attempts)
                .first()
            )
            if held is None:
                return Status(Status.PROCESSING)  # the lease ran out and another worker has it
            processing.run_handler(held, view.handle, using, count_attempt=False)
        return Status(Status.SUCCEEDED)
    except Exception as exc:
        if is_availability_error(exc):
            return _give_back_after(exc, event, secrets, using, backoff)
        # Whatever else the handler raised, for whichever database: the attempt
        # is recorded. If this worker's own connection is gone, recording fails
        # and that error propagates (the lease keeps the attempt counted).
        return _record_attempt_failure(event, exc, secrets, using, max_attempts, backoff)


def _give_back_after(
    exc: Exception, event: WebhookEvent, secrets: list[str], using: str, backoff: float
) -> Status:
    """An outage is not the event's fault: give the attempt back (see the module docs)."""
    error = f"{GIVEN_BACK}: {processing.describe_error(exc, secrets)}"
    try:
        # Not due at once: a handler whose own database stays away must not
        # hold the queue, nor be retried in a loop.
        due_in = backoff * random.uniform(0.5, 1.0)
        given = give_back(using, event.pk, event.attempts, error, due_in=due_in)
    except Exception as give_back_error:
        if not is_availability_error(give_back_error):
            raise
        raise AttemptInterrupted(event.pk, event.attempts, alias=using) from exc
    if not given:
        return Status(Status.PROCESSING)  # the lease ran out and another worker has it
    logger.warning(
        "webhook %s %s: attempt %d interrupted by an outage (%s); not counted, due again in %.0f s",
        event.source,
        event.key,
        event.attempts,
        type(exc).__name__,
        due_in,
    )
    return Status(Status.PENDING)


def _record_attempt_failure(
    event: WebhookEvent,
    exc: Exception | None,
    secrets: list[str],
    using: str,
    max_attempts: int,
    backoff: float,
) -> Status:
    error = LEASE_EXPIRED if exc is None else processing.describe_error(exc, secrets)
    attempts = min(event.attempts, max(max_attempts, 1))
    changes: dict[str, object] = {"last_error": error, "locked_until": None, "attempts": attempts}
    if attempts >= max_attempts:
        changes.update(status=Status.FAILED, next_attempt_at=None)
    else:
        delay = _policy(backoff).delay(attempts)
        changes.update(
            status=Status.PENDING,
            next_attempt_at=timezone.now() + datetime.timedelta(seconds=delay),
        )
    updated = (
        WebhookEvent.objects.using(using)
        .filter(pk=event.pk, status=Status.PROCESSING, attempts=event.attempts)
        .update(**changes)
    )
    if not updated:
        return Status(Status.PROCESSING)  # the lease ran out and another worker has it
    if changes["status"] == Status.FAILED:
        stats.increment("webhooks_failed", event.source)
        signals.webhook_failed.send(
            sender=WebhookEvent, source=event.source, key=event.key, topic=event.topic, error=error
        )
        logger.error(
            "webhook %s %s failed after %d attempts: %s", event.source, event.key, attempts, error
        )
    else:
        logger.warning(
            "webhook %s %s attempt %d failed: %s", event.source, event.key, attempts, error
        )
    return Status(str(changes["status"]))


def process_due(
    using: str,
    *,
    max_attempts: int,
    backoff: float,
    limit: int | None = None,
    lease: float | None = None,
) -> WorkerResult:
    """Process due pending events until none is left (or ``limit`` were taken)."""
    result = WorkerResult()
    while limit is None or result.total < limit:
        status = process_one(using, max_attempts=max_attempts, backoff=backoff, lease=lease)
        if status is None:
            break
        if status == Status.SUCCEEDED:
            result.succeeded += 1
        elif status == Status.FAILED:
            result.failed += 1
        else:
            result.retried += 1
    return result
