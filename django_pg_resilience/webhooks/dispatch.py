"""Hand queued webhook events to a task queue, and process one event by its pk.

A view with ``process_async = True`` and ``dispatch_to`` set calls
``dispatch_to(event_pk)`` once the pending row has committed. The task calls
:func:`process_event`, which leases that event and runs its handler exactly as
``manage.py process_webhooks`` does (the same code), so the command may run
beside the queue (as a sweep for any hand-over the queue lost) without an event
ever being processed twice.
"""

from __future__ import annotations

import datetime
import functools
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from django.db import DEFAULT_DB_ALIAS, router, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from django_pg_resilience import conf
from django_pg_resilience.errors import is_availability_error
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.webhooks.processing import Delivery

__all__ = [
    "Dispatcher",
    "Processed",
    "give_back_attempt",
    "hand_over",
    "process_event",
    "seconds_until_due",
]

logger = logging.getLogger("django_pg_resilience.webhooks")

Status = WebhookEvent.Status


class Dispatcher(Protocol):
    """Hands an event's pk to a queue: ``process_webhook_event.delay``, ``queue.enqueue``..."""

    def __call__(self, pk: int, /) -> Any: ...


@dataclass(frozen=True)
class Processed:
    """What :func:`process_event` did to the event."""

    pk: int
    status: str
    next_attempt_at: datetime.datetime | None

    @property
    def pending(self) -> bool:
        """The event waits: its handler raised (a backoff) or another worker holds it (a lease)."""
        return self.status in (Status.PENDING, Status.PROCESSING)


def _dispatcher_of(view: Any) -> Dispatcher | None:
    # Read from the class: a plain function set as a class attribute would
    # otherwise be bound to the view and called with it.
    dispatcher = vars(view).get("dispatch_to", type(view).dispatch_to)
    if isinstance(dispatcher, str):
        dispatcher = import_string(dispatcher)
    return dispatcher


def _call(dispatcher: Dispatcher, pk: int, delivery: Delivery) -> None:
    try:
        dispatcher(pk)
    except Exception as exc:
        # The event is stored and acknowledged: it stays pending for the sweep.
        logger.warning(
            "webhook %s %s: handing event %d to the queue failed (%s); it stays pending "
            "for manage.py process_webhooks",
            delivery.source,
            delivery.key,
            pk,
            type(exc).__name__,
        )


def hand_over(view: Any, delivery: Delivery, using: str, pk: int | None = None) -> None:
    """Call the view's ``dispatch_to`` with the queued event's pk once its row commits.

    ``pk``: the event's id when the caller knows it (the insert returned it):
    not read back.
    """
    dispatcher = _dispatcher_of(view)
    if dispatcher is None:
        return
    if pk is not None:
        transaction.on_commit(functools.partial(_call, dispatcher, pk, delivery), using=using)
        return
    try:
        pk = (
            WebhookEvent.objects.using(using)
            .filter(source=delivery.source, key=delivery.key, status=Status.PENDING)
            .values_list("pk", flat=True)
            .first()
        )
    except Exception as exc:
        if not is_availability_error(exc):
            raise
        logger.warning(
            "webhook %s %s: the database went away before the hand-over; the event stays "
            "pending for manage.py process_webhooks",
            delivery.source,
            delivery.key,
        )
        return
    if pk is not None:
        transaction.on_commit(functools.partial(_call, dispatcher, pk, delivery), using=using)


def process_event(
    pk: int,
    *,
    using: str | None = None,
    max_attempts: int | None = None,
    backoff: float | None = None,
    give_back: int | None = None,
) -> Processed | None:
    """Run the handler of event ``pk`` under the worker's lease; None when there is nothing to do.

    The same lease and exactly-once rules as ``manage.py process_webhooks``
    (see :mod:`.worker`): the attempt is committed before the handler runs, a
    handler error is recorded with its backoff (failed after ``max_attempts``),
    and an event whose worker died is taken over once its lease expires. An
    event another worker holds comes back as ``processing``, with the time its
    lease ends as ``next_attempt_at``: ask again then. Only an error of this
    worker's own connection propagates, for the queue to retry.

    An outage does not count as an attempt (see :mod:`.worker`): when one
    interrupts the handler while the database is away, the error is
    :class:`~.worker.AttemptInterrupted`; pass its ``attempts`` as
    ``give_back`` to the retry, which hands the attempt back first.
    """
    from django_pg_resilience.webhooks import worker

    alias = using or router.db_for_write(WebhookEvent) or DEFAULT_DB_ALIAS
    if give_back is not None:
        give_back_attempt(pk, give_back, using=alias)
    settings = conf.app_settings()
    status = worker.process_one(
        alias,
        max_attempts=max_attempts or settings.WEBHOOK_MAX_ATTEMPTS,
        backoff=settings.WEBHOOK_RETRY_BACKOFF if backoff is None else backoff,
        pk=pk,
    )
    row = (
        WebhookEvent.objects.using(alias)
        .filter(pk=pk)
        .values_list("status", "next_attempt_at")
        .first()
    )
    if row is None or (status is None and row[0] != Status.PROCESSING):
        return None  # unknown, or already processed
    return Processed(pk, str(row[0]), row[1])


def give_back_attempt(pk: int, attempts: int, *, using: str | None = None) -> bool:
    """Hand back attempt ``attempts`` of event ``pk`` that an outage interrupted (see ``.worker``).

    False when the event no longer holds it. While the database is still away,
    raises :class:`~.worker.AttemptInterrupted` carrying it again.
    """
    from django_pg_resilience.webhooks import worker

    alias = using or router.db_for_write(WebhookEvent) or DEFAULT_DB_ALIAS
    try:
        return worker.give_back(alias, pk, attempts)
    except Exception as exc:
        if not is_availability_error(exc):
            raise
        raise worker.AttemptInterrupted(pk, attempts, alias=alias) from exc


def seconds_until_due(processed: Processed) -> float:
    """Seconds until a pending event's next attempt is due (0 when it is)."""
    if processed.next_attempt_at is None:
        return 0.0
    return max(0.0, (processed.next_attempt_at - timezone.now()).total_seconds())
