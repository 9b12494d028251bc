"""One budget per operation: entered once at the entry point, read by every layer below.

An operation is what a caller waits for as one thing: a cursor call, a connect,
a unit of work (:func:`~django_pg_resilience.retry.atomic_with_retry`), a
task, a health round. Inside it a statement lost with its connection is
replayed, the replay reconnects, the reconnect waits on the circuit breaker or
for a pooled connection. If each layer started its own ``deadline``, one
call's worst case would be a multiple of it. Instead the entry point enters
the operation once (:func:`enter`, or :func:`recovery` for a layer that may
be the entry point or may be inside one), and every layer below reads the same
:class:`~django_pg_resilience.backoff.RetryBudget` from :func:`current`; no
call spends more than its ``deadline`` (plus at most one connection attempt
already in flight).

Django's own call chain (``cursor()`` → ``ensure_connection()`` → ``connect()``
→ ``get_new_connection()`` → the driver's ``connect``) has no parameter to
carry it, so the operation travels beside the call, per thread and per asyncio
task (a ``ContextVar``), and this module is the one place that reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django_pg_resilience.backoff import RetryBudget, RetryPolicy

__all__ = ["current", "enter", "recovery"]

_budget: ContextVar[RetryBudget | None] = ContextVar("pg_resilience_operation", default=None)


def current() -> RetryBudget | None:
    """The budget of the operation running on this thread (or task), if any."""
    return _budget.get()


@contextmanager
def enter(policy: RetryPolicy) -> Iterator[RetryBudget]:
    """Enter an operation at its entry point: its budget starts now, for everything inside.

    Inside another operation this joins it (the outer deadline is the caller's
    promise). The budget is not yet "recovering": the circuit breaker dates an
    outage from when the operation first needs a connection (:func:`recovery`).
    """
    budget = _budget.get()
    if budget is not None:
        yield budget
        return
    budget = RetryBudget(policy, policy.clock())
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


@contextmanager
def recovery(policy: RetryPolicy, *, started: float | None = None) -> Iterator[RetryBudget]:
    """Enter recovery (connecting, reconnecting, replaying): join the operation, or start it.

    ``started`` (``time.monotonic()``) back-dates a new budget to when the
    operation began to struggle, e.g. when a silent server was first suspected.
    """
    budget = _budget.get()
    if budget is not None:
        if budget.recovering_since is None:
            budget.recovering_since = policy.clock() if started is None else started
        yield budget
        return
    budget = (
        policy.start()
        if started is None
        else RetryBudget(policy, started, recovering_since=started)
    )
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)
