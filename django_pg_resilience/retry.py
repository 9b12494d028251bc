"""Run a unit of work in a transaction, and run it again when a failover or a
conflict stopped it.

::

    from django_pg_resilience.retry import atomic_with_retry

    @atomic_with_retry                     # or @atomic_with_retry(using="orders")
    def place_order(cart):
        order = Order.objects.create(...)
        ...

    place_order(cart)

    # Without decorating: run a function now.
    atomic_with_retry(place_order_unit, using="orders")(cart)

The whole function is re-run, inside a new ``transaction.atomic``, when it fails
with a failover-class error (connection lost, the node demoted: 25006),
``40001 serialization_failure`` or ``40P01 deadlock_detected``. The policy is
the alias's (``deadline``, ``max_attempts``, backoff with full jitter).

A re-run is safe because the failed attempt's transaction left nothing behind,
with one exception no client can rule out: a connection lost *during COMMIT*
(the commit may have landed), raised as
:class:`~django_pg_resilience.errors.CommitUnknownError`. That one is re-run
only when the unit says it is idempotent (``idempotent=True``: it records a
unique key, say, so a second run after a landed commit changes nothing);
otherwise it reaches the caller.

Inside an outer atomic block it raises
:class:`~django_pg_resilience.errors.NestedRetryError`: the outer transaction is
lost with the connection, so the retry belongs around the outermost block.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction

from django_pg_resilience import conf, operation, signals, stats
from django_pg_resilience.backoff import RetryBudget, RetryPolicy
from django_pg_resilience.errors import (
    CommitUnknownError,
    DatabaseUnavailable,
    ErrorKind,
    NestedRetryError,
    classify,
    sqlstate_of,
)

__all__ = ["atomic_with_retry"]

logger = logging.getLogger("django_pg_resilience")

P = ParamSpec("P")
R = TypeVar("R")

_RETRIED_KINDS = (
    ErrorKind.CONNECTION,
    ErrorKind.READ_ONLY,
    ErrorKind.TRANSACTION_CONFLICT,
    ErrorKind.BUSY,
)


def _policy_for(alias: str, deadline: float | None, max_attempts: int | None) -> RetryPolicy:
    policy = conf.backend_settings(alias).retry_policy
    if deadline is None and max_attempts is None:
        return policy
    return dataclasses.replace(
        policy,
        deadline=policy.deadline if deadline is None else deadline,
        max_attempts=policy.max_attempts if max_attempts is None else max_attempts,
    )


def _run(
    func: Callable[P, R],
    alias: str,
    deadline: float | None,
    max_attempts: int | None,
    idempotent: bool,
    sleep: Callable[[float], None],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    if connections[alias].in_atomic_block:
        raise NestedRetryError(
            f"atomic_with_retry({getattr(func, '__qualname__', func)!r}) was called inside an "
            f"atomic block on database {alias!r}: a nested unit cannot be retried on its own. "
            "Move atomic_with_retry around the outermost atomic block."
        )
    # The unit is the operation: every reconnect, breaker wait and busy backoff
    # inside it spends from this one budget, so the unit's deadline is the caller's.
    with operation.enter(_policy_for(alias, deadline, max_attempts)) as budget:
        while True:
            try:
                with transaction.atomic(using=alias):
                    return func(*args, **kwargs)
            except DatabaseError as exc:
                delay = _retry_delay(exc, func, alias, idempotent, budget)
                if delay > 0:
                    sleep(delay)


def _retry_delay(
    exc: DatabaseError, func: Callable[..., Any], alias: str, idempotent: bool, budget: RetryBudget
) -> float:
    """The wait before the unit runs again; raises ``exc`` when it must not run again."""
    if isinstance(exc, DatabaseUnavailable) or classify(exc) not in _RETRIED_KINDS:
        raise exc  # not retryable, or the breaker already waited the deadline out
    if isinstance(exc, CommitUnknownError) and not idempotent:
        raise exc  # the first run may have committed: running it again could double it
    name = getattr(func, "__qualname__", "a unit of work")
    attempt = budget.failures + 1
    delay = budget.next_delay()
    if delay is None:
        stats.increment("retries_exhausted", alias)
        logger.error(
            "Giving up on %s on database %r after %d attempts (%.2f s).",
            name,
            alias,
            attempt,
            budget.elapsed,
        )
        signals.retries_exhausted.send(
            sender=atomic_with_retry,
            alias=alias,
            attempts=attempt,
            elapsed=budget.elapsed,
            error=exc,
        )
        raise exc
    stats.increment("retries", alias)
    logger.warning(
        "Attempt %d/%d of %s on database %r failed (SQLSTATE %s, %s); re-running it in %.2f s.",
        attempt,
        budget.policy.max_attempts,
        name,
        alias,
        sqlstate_of(exc) or "-",
        type(exc).__name__,
        delay,
    )
    signals.connection_retry.send(
        sender=atomic_with_retry,
        alias=alias,
        attempt=attempt,
        max_attempts=budget.policy.max_attempts,
        delay=delay,
        sqlstate=sqlstate_of(exc),
        error=exc,
    )
    return delay


@overload
def atomic_with_retry(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def atomic_with_retry(
    func: None = None,
    /,
    *,
    using: str | None = None,
    deadline: float | None = None,
    max_attempts: int | None = None,
    idempotent: bool = False,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


@overload
def atomic_with_retry(
    func: Callable[P, R],
    /,
    *,
    using: str | None = None,
    deadline: float | None = None,
    max_attempts: int | None = None,
    idempotent: bool = False,
) -> Callable[P, R]: ...


def atomic_with_retry(
    func: Callable[..., Any] | None = None,
    /,
    *,
    using: str | None = None,
    deadline: float | None = None,
    max_attempts: int | None = None,
    idempotent: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Run ``func`` in ``transaction.atomic(using=...)``; re-run it on failover-class errors.

    Use it as ``@atomic_with_retry``, ``@atomic_with_retry(using="x")`` or
    ``atomic_with_retry(func, using="x")(*args)``. ``deadline`` and
    ``max_attempts`` default to the alias's settings. ``idempotent=True`` also
    re-runs the unit after :class:`CommitUnknownError`. Raises
    :class:`NestedRetryError` when called inside an atomic block on ``using``.
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            alias = using or DEFAULT_DB_ALIAS
            return _run(function, alias, deadline, max_attempts, idempotent, sleep, *args, **kwargs)

        return wrapper

    if func is not None:
        return decorate(func)
    return decorate
