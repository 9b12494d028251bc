"""Celery tasks that take effect once through a failover, redeliveries and worker crashes.

::

    from django_pg_resilience.contrib.celery import idempotent_task

    @idempotent_task(key=lambda order_id: ("fulfil-order", order_id))
    def fulfil_order(order_id):
        order = Order.objects.select_for_update().get(pk=order_id)
        Shipment.objects.create(order=order)
        return {"order": order_id, "status": "fulfilled"}

    fulfil_order.delay(42)

A task that hits an unavailable database (or an uncertain COMMIT) is retried by
Celery after the error's ``retry_after`` plus jitter, not failed; its re-run is
a no-op returning the stored outcome if the first one committed.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from celery import Task, shared_task
from django.db import DatabaseError

from django_pg_resilience import conf
from django_pg_resilience.contrib.celery.once import run_once
from django_pg_resilience.errors import ErrorKind, classify, is_availability_error

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "idempotent_task",
    "process_webhook_event",
    "retry_countdown",
    "should_retry",
]

logger = logging.getLogger("django_pg_resilience.celery")

#: Retries before an availability error fails the task: about two minutes of
#: outage at the default RETRY_AFTER of 5 s, longer than a failover takes.
DEFAULT_MAX_RETRIES = 20

KeyFunction = Callable[..., "str | Sequence[Hashable]"]


def should_retry(exc: BaseException) -> bool:
    """True for the errors a later run can get past: the database away, a conflict."""
    if is_availability_error(exc):
        return True
    return isinstance(exc, DatabaseError) and classify(exc) is ErrorKind.TRANSACTION_CONFLICT


def retry_countdown(exc: BaseException, *, jitter: float = 0.5) -> float:
    """Seconds before the retry: the error's ``retry_after`` (or RETRY_AFTER), plus up to half."""
    base = getattr(exc, "retry_after", None) or conf.app_settings().RETRY_AFTER
    # Jitter spreads the retries of every task that hit the same outage.
    return float(base) * (1.0 + random.uniform(0.0, jitter))


def retry_on_outage(task: Task, exc: Exception) -> None:
    """Raise Celery's Retry when ``exc`` is an outage; return if not (the caller re-raises)."""
    if not should_retry(exc):
        return
    countdown = retry_countdown(exc)
    logger.warning(
        "task %s[%s]: database unavailable (%s); retrying in %.1f s",
        task.name,
        task.request.id,
        type(exc).__name__,
        countdown,
    )
    # Past max_retries, Celery raises ``exc`` itself: the task fails with it.
    raise task.retry(exc=exc, countdown=countdown)


def idempotent_task(
    *,
    key: KeyFunction,
    using: str | None = None,
    app: Any = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Task]:
    """Make ``func`` a Celery task that takes effect at most once per ``key(*args, **kwargs)``.

    ``key`` returns a string or a tuple (joined with ``:``). The body runs in
    ``atomic_with_retry(using=...)`` with the key record; its return value must
    be JSON-serializable (it is stored and returned to re-runs). ``options`` go
    to ``app.task`` (``shared_task`` without ``app``); the defaults are
    ``acks_late=True`` and ``reject_on_worker_lost=True`` (a task whose worker
    died is delivered again) and ``max_retries=DEFAULT_MAX_RETRIES``.
    """
    if not callable(key):
        raise TypeError(
            "idempotent_task(key=...) takes a function of the task's arguments, e.g. "
            "key=lambda order_id: ('fulfil-order', order_id)"
        )
    if "bind" in options:
        raise TypeError(
            "idempotent_task() binds the task itself; the body gets the task's arguments "
            "only (celery.current_task is the task, if the body needs it)"
        )
    options.setdefault("acks_late", True)
    options.setdefault("reject_on_worker_lost", True)
    options.setdefault("max_retries", DEFAULT_MAX_RETRIES)

    def decorate(func: Callable[..., Any]) -> Task:
        def run(task: Task, *args: Any, **kwargs: Any) -> Any:
            try:
                job_key = key(*args, **kwargs)
                return run_once(job_key, func, *args, using=using, name=task.name, **kwargs).outcome
            except Exception as exc:
                retry_on_outage(task, exc)
                raise

        # Name and docs from func, not its signature: Celery checks the call
        # against ``run``'s own (task, *args, **kwargs).
        functools.update_wrapper(run, func, updated=())
        del run.__wrapped__  # type: ignore[attr-defined]
        register = shared_task if app is None else app.task
        return register(bind=True, **options)(run)

    return decorate


@shared_task(
    bind=True,
    name="django_pg_resilience.process_webhook_event",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=DEFAULT_MAX_RETRIES,
)
def process_webhook_event(task: Task, pk: int, using: str | None = None) -> str | None:
    """Process webhook event ``pk`` (the view's ``dispatch_to``); its new status.

    Runs under the same row lock and exactly-once rules as ``process_webhooks``;
    a handler failure is recorded on the event and retried after its backoff.
    """
    from django_pg_resilience.webhooks.dispatch import process_event, seconds_until_due

    try:
        processed = process_event(pk, using=using)
    except Exception as exc:
        retry_on_outage(task, exc)
        raise
    if processed is not None and processed.pending:
        # The handler raised: the event holds the attempt and its backoff.
        raise task.retry(countdown=seconds_until_due(processed))
    return None if processed is None else processed.status
