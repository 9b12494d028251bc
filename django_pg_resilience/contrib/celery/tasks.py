"""Celery tasks that take effect once through a failover, redeliveries and worker crashes.

::

    from django_pg_resilience.contrib.celery import idempotent_task

    @idempotent_task(key=lambda order_id: ("fulfil-order", order_id))
    def fulfil_order(order_id):
        order = Order.objects.select_for_update().get(pk=order_id)
        Shipment.objects.create(order=order)
        return {"order": order_id, "status": "fulfilled"}

    fulfil_order.delay(42)

A task that meets an unavailable database (down, busy, an uncertain COMMIT, a
transaction conflict) goes back to the queue and tries again, with waits that
grow with the outage (:mod:`.outage`), until ``JOB_OUTAGE_BUDGET`` has passed
since its first such failure; then it is parked (``ParkedJob``, in the admin)
and fails with :class:`~.outage.OutageBudgetExceeded`. Its re-run is a no-op
returning the stored outcome if the first run committed.

The outage's start travels in the message's headers, and outage retries do not
move Celery's ``retries`` counter: ``max_retries`` counts only the task's other
retries (``autoretry_for``, an explicit ``retry``). Both facts survive a
redelivered message (a killed worker process), since a redelivery is the same
message.
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, NoReturn

from celery import Task, shared_task
from celery.exceptions import Reject, Retry
from django.db import DatabaseError

from django_pg_resilience import conf, stats
from django_pg_resilience.contrib.celery.once import job_key, run_once
from django_pg_resilience.contrib.celery.outage import (
    OUTAGE_SINCE_HEADER,
    OutageBudgetExceeded,
    OutagePolicy,
)
from django_pg_resilience.errors import ErrorKind, classify, is_availability_error

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "OutageBudgetExceeded",
    "idempotent_task",
    "outage_policy",
    "process_webhook_event",
    "should_retry",
]

logger = logging.getLogger("django_pg_resilience.celery")

#: Retries of a task's *other* failures (``autoretry_for``, an explicit
#: ``retry``): Celery's own default. Outage retries are not counted here; they
#: are bounded by time, ``JOB_OUTAGE_BUDGET``.
DEFAULT_MAX_RETRIES = 3

#: Celery's ``retries`` when the outage began: an outage is one run of outage
#: failures; another retry in between (Celery's counter moved) starts a new one.
OUTAGE_RETRIES_HEADER = "pg_resilience_outage_retries"
#: The previous outage failure's error (secrets masked), for the parked row.
LAST_ERROR_HEADER = "pg_resilience_last_error"

KeyFunction = Callable[..., "str | Sequence[Hashable]"]

_LOCAL_KINDS = (ErrorKind.TRANSACTION_CONFLICT, ErrorKind.BUSY)


def should_retry(exc: BaseException) -> bool:
    """True for the errors a later run can get past: the database away or busy, a conflict."""
    if is_availability_error(exc):
        return True
    return isinstance(exc, DatabaseError) and classify(exc) in _LOCAL_KINDS


def outage_policy() -> OutagePolicy:
    """The outage policy of the settings (``JOB_OUTAGE_BUDGET``, ``JOB_OUTAGE_RETRY_CAP``)."""
    settings = conf.app_settings()
    return OutagePolicy(budget=settings.JOB_OUTAGE_BUDGET, cap=settings.JOB_OUTAGE_RETRY_CAP)


def _header(request: Any, name: str) -> Any:
    value = request.get(name)
    if value is None and isinstance(request.headers, Mapping):
        value = request.headers.get(name)
    return value


def outage_since(request: Any) -> float | None:
    """The Unix time of this job's first failure in the current outage, if it is in one."""
    since, retries = _header(request, OUTAGE_SINCE_HEADER), _header(request, OUTAGE_RETRIES_HEADER)
    try:
        if since is None or int(retries) != int(request.retries or 0):
            return None
        return float(since)
    except (TypeError, ValueError):
        return None  # not ours, or garbled: start counting now


def _in_a_queue(request: Any) -> bool:
    # Called as a function, or eagerly (task.apply(), task_always_eager): no
    # queue brings the job back later, so the caller gets the error itself.
    return not (request.called_directly or request.is_eager)


def park_if_past_budget(task: Task, *, key: str = "", kwargs: Any = None) -> None:
    """Park the job (and fail it) when its outage budget ran out before this try.

    ``kwargs``: the task's keyword arguments to park (and to retry parking
    with), if not the message's own.
    """
    request = task.request
    since = outage_since(request)
    if since is not None and _in_a_queue(request) and outage_policy().exhausted(since):
        _park(task, since, key, None, kwargs)


def retry_on_outage(task: Task, exc: Exception, *, key: str = "", kwargs: Any = None) -> None:
    """Send the job back to the queue when ``exc`` is an outage; return if not (re-raise it).

    ``kwargs``: the task's keyword arguments for the retry (default: unchanged).
    Past the budget, park the job and raise :class:`OutageBudgetExceeded`.
    """
    request = task.request
    if not should_retry(exc) or not _in_a_queue(request):
        return
    policy = outage_policy()
    since = outage_since(request)
    if since is None:
        since = policy.clock()
    if policy.exhausted(since):
        _park(task, since, key, exc, kwargs)
    countdown = policy.countdown(since)
    stats.increment("job_outage_retries", task.name)
    logger.warning(
        "task %s[%s]: database unavailable (%s) for %.0f s; retrying in %.1f s",
        task.name,
        request.id,
        type(exc).__name__,
        policy.elapsed(since),
        countdown,
    )
    raise _send_back(task, exc, countdown, since, kwargs)


def _send_back(
    task: Task, exc: BaseException | None, countdown: float, since: float, kwargs: Any
) -> Retry:
    """Re-send this message after ``countdown`` s, the outage in its headers, ``retries`` as is."""
    from django_pg_resilience.contrib.celery.parking import describe_error

    request = task.request
    headers = {
        **(request.headers or {}),
        OUTAGE_SINCE_HEADER: since,
        OUTAGE_RETRIES_HEADER: int(request.retries or 0),
    }
    if exc is not None:
        headers[LAST_ERROR_HEADER] = describe_error(exc)[:500]
    # Not task.retry(): that counts the retry against max_retries, which
    # counts the task's other failures only.
    signature = task.signature_from_request(
        request, None, kwargs, countdown=countdown, headers=headers
    )
    try:
        signature.apply_async()
    except Exception as send_error:
        # The broker refused the retry: put this message back rather than lose the job.
        raise Reject(send_error, requeue=True) from send_error
    return Retry(exc=exc, when=countdown, sig=signature)


def _park(
    task: Task, since: float, key: str, exc: BaseException | None, kwargs: Any = None
) -> NoReturn:
    """Write the parked row and fail the job; if that database is away too, come back later."""
    from django_pg_resilience.contrib.celery.parking import describe_error, park

    request = task.request
    policy = outage_policy()
    if exc is not None:
        last_error = describe_error(exc)
    else:
        last_error = str(_header(request, LAST_ERROR_HEADER) or "")
    delivery = request.delivery_info or {}
    try:
        parked, _ = park(
            task=task.name,
            task_id=str(request.id),
            args=list(request.args or ()),
            kwargs=dict(request.kwargs or {}) if kwargs is None else dict(kwargs),
            key=key,
            queue=str(delivery.get("routing_key") or ""),
            first_failure=datetime.datetime.fromtimestamp(since, tz=datetime.timezone.utc),
            last_error=last_error,
        )
    except Exception as park_error:
        if not should_retry(park_error):
            raise
        # Past the budget the body never runs again: the retries only try to park.
        countdown = policy.wait_to_park()
        logger.warning(
            "task %s[%s]: outage budget (%g s) spent; parking it once the database answers "
            "(next try in %.1f s)",
            task.name,
            request.id,
            policy.budget,
            countdown,
        )
        raise _send_back(task, exc, countdown, since, kwargs) from park_error
    raise OutageBudgetExceeded(
        f"{task.name}[{request.id}]: the database was unavailable for "
        f"{policy.elapsed(since):.0f} s, past JOB_OUTAGE_BUDGET ({policy.budget:g} s); "
        f"parked as parked job {parked.pk}, replay it from the admin. Last error: {last_error}"
    ) from exc


def idempotent_task(
    *,
    key: KeyFunction,
    using: str | None = None,
    scope: str | None = None,
    app: Any = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Task]:
    """Make ``func`` a Celery task that takes effect at most once per ``key(*args, **kwargs)``.

    ``key`` returns a string or a tuple. Keys are scoped to the task (its name
    is part of the stored key): another task returning the same key is another
    unit. ``scope="orders"`` shares one scope between the tasks that name it.
    The body runs in ``atomic_with_retry(using=...)`` with the key record; its
    return value must be JSON-serializable (it is stored and returned to
    re-runs). ``options`` go to ``app.task`` (``shared_task`` without ``app``);
    the defaults are ``acks_late=True`` and ``reject_on_worker_lost=True`` (a
    task whose worker died is delivered again) and ``max_retries=3``, which
    counts other failures only: an outage is bounded by ``JOB_OUTAGE_BUDGET``.
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
            unit_scope = task.name if scope is None else scope
            parts = key(*args, **kwargs)
            stored = job_key(parts, scope=unit_scope)
            park_if_past_budget(task, key=stored)
            try:
                return run_once(
                    parts, func, *args, using=using, name=task.name, scope=unit_scope, **kwargs
                ).outcome
            except Exception as exc:
                retry_on_outage(task, exc, key=stored)
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
    # The event's own WEBHOOK_MAX_ATTEMPTS bounds its handler's failures, and
    # JOB_OUTAGE_BUDGET its outages.
    max_retries=None,
)
def process_webhook_event(
    task: Task, pk: int, using: str | None = None, give_back: int | None = None
) -> str | None:
    """Process webhook event ``pk`` (the view's ``dispatch_to``); its new status.

    Runs under the same row lock and exactly-once rules as ``process_webhooks``;
    a handler failure is recorded on the event and retried after its backoff.
    An outage does not count as an attempt of the event: the task waits it out
    like any job (``give_back`` carries an attempt the outage interrupted, to
    hand back once the database answers).
    """
    from django_pg_resilience.webhooks import dispatch
    from django_pg_resilience.webhooks.worker import AttemptInterrupted

    try:
        if give_back is not None:
            # First, even past the budget: a parked task must not leave the event leased.
            dispatch.give_back_attempt(pk, give_back, using=using)
        park_if_past_budget(task, kwargs={"using": using})
        processed = dispatch.process_event(pk, using=using)
    except Exception as exc:
        carried = exc.attempts if isinstance(exc, AttemptInterrupted) else None
        retry_on_outage(task, exc, kwargs={"using": using, "give_back": carried})
        raise
    if processed is not None and processed.pending:
        # The handler raised: the event holds the attempt and its backoff.
        raise task.retry(kwargs={"using": using}, countdown=dispatch.seconds_until_due(processed))
    return None if processed is None else processed.status
