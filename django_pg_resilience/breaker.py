"""Circuit breaker, one per process and database alias: hold young outages, fail
fast in old ones.

Three states:

* **closed**: no outage known. Callers connect directly, in parallel.
* **holding** (half-open): a connect failed less than ``deadline`` ago. One
  caller at a time probes the database, with exponential backoff and full
  jitter between probes; the others wait on that probe (a ``Condition``), so an
  outage costs one connection attempt per probe, not one per thread. Every
  waiter proceeds the instant a probe succeeds. A caller waits at most its own
  ``deadline``.
* **open**: the outage has outlived ``deadline`` (or ``breaker_threshold``
  probes failed). Callers fail in microseconds with
  :class:`~django_pg_resilience.errors.DatabaseUnavailable`, whose
  ``retry_after`` is the time to the next probe, without touching the network.
  Probing goes on, driven by callers arriving (no thread of its own): the first
  caller after ``retry_after`` makes one attempt; the interval doubles from
  ``breaker_open_interval`` up to ``breaker_max_interval``. A successful probe
  closes the circuit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django_pg_resilience import signals, stats
from django_pg_resilience.backoff import RetryBudget, RetryPolicy
from django_pg_resilience.errors import DatabaseUnavailable, sqlstate_of

__all__ = ["BreakerSettings", "CircuitBreaker", "breaker_for", "reset_breakers"]

logger = logging.getLogger("django_pg_resilience")

T = TypeVar("T")

#: The smallest ``retry_after`` given to callers: "now" is not a useful answer.
_MIN_RETRY_AFTER = 0.001


@dataclass(frozen=True)
class BreakerSettings:
    """The open-circuit side of the breaker (seconds)."""

    #: First interval between probes once the circuit is open.
    open_interval: float = 1.0
    #: Largest interval between probes once the circuit is open.
    max_interval: float = 5.0
    #: Failed probes in one outage that open the circuit before ``deadline`` (0: off).
    threshold: int = 0


class CircuitBreaker:
    """The breaker of one alias in this process. Thread-safe."""

    def __init__(self, alias: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.alias = alias
        self._clock = clock
        # Re-entrant: a signal receiver sent under the lock may read ``state``.
        self._cond = threading.Condition(threading.RLock())
        self._probing = False
        #: When the current outage began (the first failed attempt), or None.
        self._outage_since: float | None = None
        self._failures = 0
        self._open = False
        self._open_probes = 0
        #: Earliest time of the next probe.
        self._next_probe_at = 0.0
        #: Bumped by every probe that ends (success or failure), so a waiter can
        #: tell "attempts made on my behalf".
        self._probes = 0

    # --- introspection -------------------------------------------------

    @property
    def state(self) -> str:
        """``"closed"``, ``"holding"`` or ``"open"``."""
        with self._cond:
            if self._open:
                return "open"
            return "closed" if self._outage_since is None else "holding"

    def retry_after(self) -> float:
        """Seconds until the next probe (0 when the circuit is closed)."""
        with self._cond:
            if self._outage_since is None:
                return 0.0
            return max(self._next_probe_at - self._clock(), 0.0)

    def reset(self) -> None:
        """Forget any outage (for tests)."""
        with self._cond:
            was_open = self._open
            self._close_locked()
            self._cond.notify_all()
        if was_open:
            stats.set_gauge("breaker_open", self.alias, 0)

    # --- the call --------------------------------------------------------

    def call(
        self,
        attempt: Callable[[float], T],
        policy: RetryPolicy,
        *,
        is_retryable: Callable[[BaseException], bool],
        settings: BreakerSettings | None = None,
    ) -> T:
        """Run ``attempt(timeout)`` through the breaker and return its result.

        ``timeout`` is the number of seconds left to the caller. An error for
        which ``is_retryable`` is False is raised at once (a bad password does
        not get better). When the caller runs out of time or attempts, or the
        circuit is open, :class:`DatabaseUnavailable` is raised from the last
        error.
        """
        settings = settings or BreakerSettings()
        budget = policy.start()
        first_probe = self._probes
        last_error: BaseException | None = None
        while True:
            role = self._wait_for_turn(budget, settings, first_probe, last_error)
            attempt_started = self._clock()
            try:
                result = attempt(budget.remaining)
            except BaseException as exc:
                stats.increment("connect_failures", self.alias)
                if not is_retryable(exc):
                    self._end_probe(role)
                    raise
                last_error = exc
                self._record_failure(
                    role, exc, policy, settings, budget.failures + 1, attempt_started
                )
                budget.failures += 1
                continue
            self._record_success(role)
            return result

    def _wait_for_turn(
        self,
        budget: RetryBudget,
        settings: BreakerSettings,
        first_probe: int,
        last_error: BaseException | None,
    ) -> str:
        """Block until this caller may attempt; return its role ("direct" or "probe")."""
        policy = budget.policy
        deadline_at = budget.deadline_at
        with self._cond:
            while True:
                now = self._clock()
                if self._outage_since is None and not self._probing:
                    return "direct"
                if self._open:
                    if self._probing or now < self._next_probe_at:
                        raise self._unavailable_locked(now, last_error)
                    self._probing = True
                    return "probe"
                attempts_seen = max(self._probes - first_probe, budget.failures)
                if now >= deadline_at or attempts_seen >= max(policy.max_attempts, 1):
                    self._give_up_locked(now, budget, settings, attempts_seen, last_error)
                if not self._probing and now >= self._next_probe_at:
                    self._probing = True
                    return "probe"
                wake_at = deadline_at if self._probing else min(deadline_at, self._next_probe_at)
                self._cond.wait(max(wake_at - now, 0.0))

    def _give_up_locked(
        self,
        now: float,
        budget: RetryBudget,
        settings: BreakerSettings,
        attempts: int,
        error: BaseException | None,
    ) -> None:
        outage = now - (self._outage_since or now)
        if outage >= budget.policy.deadline and not self._open:
            self._open_locked(now, settings, reason="deadline")
        elapsed = now - budget.started
        stats.increment("retries_exhausted", self.alias)
        logger.error(
            "Database %r still unreachable after %.2f s of outage (%d attempts); giving up.",
            self.alias,
            outage,
            attempts,
        )
        signals.retries_exhausted.send(
            sender=CircuitBreaker, alias=self.alias, attempts=attempts, elapsed=elapsed, error=error
        )
        raise self._unavailable_locked(now, error)

    def _unavailable_locked(self, now: float, error: BaseException | None) -> DatabaseUnavailable:
        retry_after = max(self._next_probe_at - now, _MIN_RETRY_AFTER)
        stats.increment("unavailable_errors", self.alias)
        exc = DatabaseUnavailable(
            f"Database {self.alias!r} is unavailable; next attempt in {retry_after:.2f} s.",
            alias=self.alias,
            retry_after=retry_after,
        )
        exc.__cause__ = error
        return exc

    def _end_probe(self, role: str) -> None:
        if role == "probe":
            with self._cond:
                self._probing = False
                self._probes += 1
                self._cond.notify_all()

    def _record_failure(
        self,
        role: str,
        exc: BaseException,
        policy: RetryPolicy,
        settings: BreakerSettings,
        attempt_no: int,
        attempt_started: float,
    ) -> None:
        opened_retry_after: float | None = None
        with self._cond:
            now = self._clock()
            if self._outage_since is None:
                # The outage began no later than the attempt that found it.
                self._outage_since = attempt_started
            self._failures += 1
            if role == "probe":
                self._probing = False
                self._probes += 1
            if self._open:
                self._open_probes += 1
                interval = min(settings.max_interval, settings.open_interval * 2**self._open_probes)
                self._next_probe_at = now + interval
                delay = interval
            else:
                delay = policy.delay(self._failures)
                if role == "probe" or self._next_probe_at < now:
                    self._next_probe_at = now + delay
                outage = now - self._outage_since
                if outage >= policy.deadline or (
                    settings.threshold and self._failures >= settings.threshold
                ):
                    opened_retry_after = self._open_locked(now, settings, reason="outage")
                    delay = opened_retry_after
            self._cond.notify_all()
        sqlstate = sqlstate_of(exc) or "-"
        logger.warning(
            "Connection attempt %d/%d to database %r failed (SQLSTATE %s, %s); "
            "%.2f s into the outage, next attempt in %.2f s.",
            attempt_no,
            policy.max_attempts,
            self.alias,
            sqlstate,
            type(exc).__name__,
            now - (self._outage_since or now),
            delay,
        )
        signals.connection_retry.send(
            sender=CircuitBreaker,
            alias=self.alias,
            attempt=attempt_no,
            max_attempts=policy.max_attempts,
            delay=delay,
            sqlstate=sqlstate_of(exc),
            error=exc,
        )

    def _open_locked(self, now: float, settings: BreakerSettings, *, reason: str) -> float:
        self._open = True
        self._open_probes = 0
        self._next_probe_at = now + settings.open_interval
        stats.increment("breaker_opened", self.alias)
        stats.set_gauge("breaker_open", self.alias, 1)
        logger.error(
            "Circuit breaker for database %r opened (%s); callers fail fast until a probe "
            "succeeds.",
            self.alias,
            reason,
        )
        signals.breaker_opened.send(
            sender=CircuitBreaker, alias=self.alias, retry_after=settings.open_interval
        )
        return settings.open_interval

    def _record_success(self, role: str) -> None:
        with self._cond:
            outage_since = self._outage_since
            was_open = self._open
            if role == "probe":
                self._probing = False
                self._probes += 1
            if outage_since is None:
                return
            outage = self._clock() - outage_since
            self._close_locked()
            self._cond.notify_all()
        if was_open:
            stats.set_gauge("breaker_open", self.alias, 0)
        logger.warning("Database %r reachable again after %.2f s.", self.alias, outage)
        signals.breaker_closed.send(sender=CircuitBreaker, alias=self.alias, outage=outage)

    def _close_locked(self) -> None:
        self._outage_since = None
        self._failures = 0
        self._open = False
        self._open_probes = 0
        self._next_probe_at = 0.0


_registry: dict[str, CircuitBreaker] = {}
_registry_lock = threading.Lock()


def breaker_for(alias: str) -> CircuitBreaker:
    """The breaker of ``alias`` in this process (created on first use)."""
    breaker = _registry.get(alias)
    if breaker is None:
        with _registry_lock:
            breaker = _registry.setdefault(alias, CircuitBreaker(alias))
    return breaker


def reset_breakers() -> None:
    """Close every breaker of this process (for tests)."""
    with _registry_lock:
        breakers = list(_registry.values())
    for breaker in breakers:
        breaker.reset()
