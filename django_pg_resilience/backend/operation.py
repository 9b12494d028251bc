"""One recovery budget per operation, shared by every layer that waits.

A statement lost with its connection is replayed; the replay reconnects; the
reconnect waits on the circuit breaker; in pool mode it waits for a pooled
connection. If each layer started its own ``deadline``, one call's worst case
would be a multiple of it. Instead the first layer that enters recovery starts
the budget and the layers below it find it here and spend from it, so no call
spends more than ``deadline`` recovering (plus at most one connection attempt
already in flight).

The budget is per thread and per asyncio task (a ``ContextVar``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django_pg_resilience.backoff import RetryBudget, RetryPolicy

__all__ = ["current", "recovery"]

_budget: ContextVar[RetryBudget | None] = ContextVar("pg_resilience_budget", default=None)


def current() -> RetryBudget | None:
    """The budget of the operation in recovery on this thread, if any."""
    return _budget.get()


@contextmanager
def recovery(policy: RetryPolicy, *, started: float | None = None) -> Iterator[RetryBudget]:
    """Enter recovery: join the operation's budget, or start it with ``policy``.

    ``started`` (``time.monotonic()``) back-dates a new budget to when the
    operation began to struggle, e.g. when a silent server was first suspected.
    """
    budget = _budget.get()
    if budget is not None:
        yield budget
        return
    budget = policy.start() if started is None else RetryBudget(policy, started)
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)
