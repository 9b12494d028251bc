"""A small, pure retry policy: exponential backoff with full jitter, a deadline
and an attempt count.

No Django and no I/O here: the clock and the random source are injected, so the
schedule can be tested exactly. The shape follows psycopg_pool's
``AttemptWithBackoff``::

    policy = RetryPolicy(deadline=4.0, max_attempts=100, base=0.05, cap=0.05)
    budget = policy.start()
    while True:
        try:
            return connect()
        except OperationalError:
            delay = budget.next_delay()
            if delay is None:
                raise          # out of attempts or out of time
            sleep(delay)

Full jitter (a uniform wait between 0 and the exponential step) is what AWS's
"Exponential Backoff and Jitter" found spreads reconnecting clients best.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RetryBudget", "RetryPolicy"]

Clock = Callable[[], float]
Random = Callable[[], float]


@dataclass(frozen=True)
class RetryPolicy:
    """How one operation retries. Every duration is in seconds."""

    #: Longest time the operation may spend, from its first attempt to giving up.
    deadline: float = 4.0
    #: Most attempts, the first one included (0 or 1: no retry).
    max_attempts: int = 100
    #: First backoff step; each further step doubles, up to ``cap``.
    base: float = 0.05
    #: Largest backoff step.
    cap: float = 0.05
    #: Full jitter: wait a uniform random time in ``[0, step]`` instead of ``step``.
    jitter: bool = True
    clock: Clock = field(default=time.monotonic, compare=False, repr=False)
    random: Random = field(default=random.random, compare=False, repr=False)

    def step(self, failures: int) -> float:
        """The backoff step (before jitter) after ``failures`` consecutive failures (>= 1)."""
        exponent = max(failures - 1, 0)
        # Cap the exponent first: 2 ** 1000 is fine in Python, but pointless.
        return min(self.cap, self.base * (2 ** min(exponent, 60)))

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures, jitter applied."""
        step = self.step(failures)
        return self.random() * step if self.jitter else step

    def start(self) -> RetryBudget:
        """Begin one operation that connects now: its attempts and its deadline."""
        now = self.clock()
        return RetryBudget(self, now, recovering_since=now)


class RetryBudget:
    """The attempts and time left to one operation (not thread-safe: one per caller)."""

    def __init__(
        self, policy: RetryPolicy, started: float, *, recovering_since: float | None = None
    ) -> None:
        self.policy = policy
        self.started = started
        self.deadline_at = started + policy.deadline
        #: Attempts that failed so far.
        self.failures = 0
        #: When the operation began to connect or reconnect (monotonic), or None while
        #: it has not: the circuit breaker dates an outage the operation finds from here.
        self.recovering_since = recovering_since

    @property
    def elapsed(self) -> float:
        """Seconds since the operation started."""
        return self.policy.clock() - self.started

    @property
    def remaining(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.deadline_at - self.policy.clock())

    @property
    def exhausted(self) -> bool:
        """No attempt may be made any more."""
        return self.failures >= max(self.policy.max_attempts, 1) or self.remaining <= 0.0

    def next_delay(self) -> float | None:
        """Record a failed attempt; return the wait before the next one, or None to give up.

        The wait is cut short so the next attempt still starts before the deadline.
        """
        self.failures += 1
        if self.exhausted:
            return None
        return min(self.policy.delay(self.failures), self.remaining)
