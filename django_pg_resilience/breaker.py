"""Circuit breaker, one per process and database alias: hold young outages, fail
fast in old ones.

Three states:

* **closed**: no outage known. Callers connect directly, in parallel.
* **holding** (half-open): a connect failed less than ``deadline`` ago. One
  caller at a time probes the database, with exponential backoff and full
  jitter between probes; the others wait on that probe (a ``Condition``), so an
  outage costs one connection attempt per probe, not one per thread. Every
  waiter proceeds the instant a probe succeeds. A caller waits at most what is
  left of its operation's budget.
* **open**: the outage has outlived ``deadline`` (or ``breaker_threshold``
  probes failed). Callers fail in microseconds with
  :class:`~django_pg_resilience.errors.DatabaseUnavailable`, whose
  ``retry_after`` is the time to the next probe, without touching the network.
  Probing goes on, driven by callers arriving (no thread of its own): the first
  caller after ``retry_after`` makes one attempt, about once per
  ``breaker_open_interval`` (jittered, growing to at most
  ``breaker_max_interval``), so the site is back within about a second of the
  database, however long the outage lasted. A successful probe closes the
  circuit.

Logging and signals never run under the breaker's lock: a slow log handler
(Sentry, SMTP) must not stall every thread of the alias. An outage logs one
ERROR line per process when callers start being refused, not one per caller.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django_pg_resilience import signals, stats
from django_pg_resilience.backoff import RetryBudget
from django_pg_resilience.errors import DatabaseUnavailable, sqlstate_of

__all__ = ["BreakerSettings", "CircuitBreaker", "breaker_for", "reset_breakers"]

logger = logging.getLogger("django_pg_resilience")

T = TypeVar("T")

#: The smallest ``retry_after`` given to callers: "now" is not a useful answer.
_MIN_RETRY_AFTER = 0.001

#: Roles of a caller let through: straight to the database, or as the one probe.
DIRECT = "direct"
PROBE = "probe"

_Event = Callable[[], object]


@dataclass(frozen=True)
class BreakerSettings:
    """The open-circuit side of the breaker (seconds)."""

    #: Interval between probes once the circuit is open (jittered by -25 %..0).
    open_interval: float = 0.9
    #: Largest interval between probes once the circuit is open.
    max_interval: float = 0.9
    #: Failed probes in one outage that open the circuit before ``deadline`` (0: off).
    threshold: int = 0


class CircuitBreaker:
    """The breaker of one alias in this process. Thread-safe."""

    def __init__(
        self,
        alias: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.alias = alias
        self._clock = clock
        self._random = rand
        self._cond = threading.Condition(threading.Lock())
        self._probing = False
        #: When the current outage began (the first failed attempt), or None.
        #: Read without the lock on hot paths: a float or None is read atomically.
        self.outage_since: float | None = None
        self._failures = 0
        self._open = False
        self._open_probes = 0
        self._refusal_logged = False
        #: Earliest time of the next probe.
        self._next_probe_at = 0.0
        #: Bumped by every probe that ends (success or failure), so a waiter can
        #: tell "attempts made on my behalf".
        self._probes = 0

    # --- introspection -------------------------------------------------

    @property
    def state(self) -> str:
        """``"closed"``, ``"holding"`` or ``"open"``."""
        if self._open:
            return "open"
        return "closed" if self.outage_since is None else "holding"

    def retry_after(self) -> float:
        """Seconds until the next probe (0 when the circuit is closed)."""
        with self._cond:
            if self.outage_since is None:
                return 0.0
            return max(self._next_probe_at - self._clock(), 0.0)

    def reset(self) -> None:
        """Forget any outage (for tests)."""
        with self._cond:
            was_open = self._open
            self._close_locked()
            self._probing = False
            self._cond.notify_all()
        if was_open:
            stats.set_gauge("breaker_open", self.alias, 0)

    # --- the call --------------------------------------------------------

    def call(
        self,
        attempt: Callable[[float], T],
        budget: RetryBudget,
        *,
        is_retryable: Callable[[BaseException], bool],
        settings: BreakerSettings | None = None,
    ) -> T:
        """Run ``attempt(timeout)`` through the breaker and return its result.

        ``budget`` is the caller's operation budget (shared with the layers
        above: replay, pool checkout), and ``timeout`` the seconds left in it.
        An error for which ``is_retryable`` is False is raised at once (a bad
        password does not get better). When the budget runs out, or the
        circuit is open, :class:`DatabaseUnavailable` is raised from the last
        error.
        """
        settings = settings or BreakerSettings()
        first_probe = self._probes
        last_error: BaseException | None = None
        while True:
            role = self.admit(budget, settings, first_probe=first_probe, last_error=last_error)
            attempt_started = self._clock()
            try:
                result = attempt(budget.remaining)
            except BaseException as exc:
                if not is_retryable(exc):
                    self.end_probe(role)
                    raise
                stats.increment("connect_failures", self.alias)
                last_error = exc
                budget.failures += 1
                self.record_failure(role, exc, budget, settings, attempt_started)
                continue
            self.record_success(role)
            return result

    def admit(
        self,
        budget: RetryBudget,
        settings: BreakerSettings,
        *,
        first_probe: int | None = None,
        last_error: BaseException | None = None,
    ) -> str:
        """Block until this caller may attempt; return its role (:data:`DIRECT` or :data:`PROBE`).

        Raises :class:`DatabaseUnavailable` when the circuit is open and it is
        not yet time to probe, or when the caller's budget runs out.
        """
        if self.outage_since is None and not self._probing:
            return DIRECT  # the happy path takes no lock
        if first_probe is None:
            first_probe = self._probes
        policy = budget.policy
        deadline_at = budget.deadline_at
        events: list[_Event] = []
        try:
            with self._cond:
                while True:
                    now = self._clock()
                    if self.outage_since is None and not self._probing:
                        return DIRECT
                    if self._open:
                        if self._probing or now < self._next_probe_at:
                            raise self._refuse_locked(now, last_error, events)
                        self._probing = True
                        return PROBE
                    attempts_seen = max(self._probes - first_probe, budget.failures)
                    if now >= deadline_at or attempts_seen >= max(policy.max_attempts, 1):
                        raise self._give_up_locked(
                            now, budget, settings, attempts_seen, last_error, events
                        )
                    if not self._probing and now >= self._next_probe_at:
                        self._probing = True
                        return PROBE
                    wake_at = (
                        deadline_at if self._probing else min(deadline_at, self._next_probe_at)
                    )
                    self._cond.wait(max(wake_at - now, 0.0))
        finally:
            _emit(events)

    def _give_up_locked(
        self,
        now: float,
        budget: RetryBudget,
        settings: BreakerSettings,
        attempts: int,
        error: BaseException | None,
        events: list[_Event],
    ) -> DatabaseUnavailable:
        outage = now - (self.outage_since or now)
        if outage >= budget.policy.deadline and not self._open:
            self._open_locked(now, settings, "deadline", events)
        elapsed = now - budget.started
        stats.increment("retries_exhausted", self.alias)
        events.append(
            lambda: signals.retries_exhausted.send(
                sender=CircuitBreaker,
                alias=self.alias,
                attempts=attempts,
                elapsed=elapsed,
                error=error,
            )
        )
        return self._refuse_locked(now, error, events)

    def _refuse_locked(
        self, now: float, error: BaseException | None, events: list[_Event]
    ) -> DatabaseUnavailable:
        retry_after = max(self._next_probe_at - now, _MIN_RETRY_AFTER)
        stats.increment("unavailable_errors", self.alias)
        if not self._refusal_logged:
            self._refusal_logged = True
            outage = now - (self.outage_since or now)
            events.append(
                lambda: logger.error(
                    "Database %r unreachable for %.2f s; callers get DatabaseUnavailable "
                    "until a probe succeeds (logged once per outage).",
                    self.alias,
                    outage,
                )
            )
        exc = DatabaseUnavailable(
            f"Database {self.alias!r} is unavailable; next attempt in {retry_after:.2f} s.",
            alias=self.alias,
            retry_after=retry_after,
        )
        exc.__cause__ = error
        return exc

    def unavailable(self, error: BaseException | None = None) -> DatabaseUnavailable:
        """The error a caller gets while this breaker knows of an outage."""
        events: list[_Event] = []
        with self._cond:
            exc = self._refuse_locked(self._clock(), error, events)
        _emit(events)
        return exc

    def end_probe(self, role: str) -> None:
        """The probe ended without telling anything about the database (a configuration error)."""
        if role == PROBE:
            with self._cond:
                self._probing = False
                self._probes += 1
                self._cond.notify_all()

    def record_failure(
        self,
        role: str,
        exc: BaseException,
        budget: RetryBudget | None,
        settings: BreakerSettings,
        attempt_started: float | None = None,
    ) -> None:
        """A connection attempt failed (made by a caller, a probe, or the pool's own thread)."""
        events: list[_Event] = []
        policy = budget.policy if budget is not None else None
        with self._cond:
            now = self._clock()
            if self.outage_since is None:
                # The outage began no later than the attempt that found it; when that
                # was the caller's first attempt, no later than the caller's operation
                # (its budget), so a caller that spends its whole deadline in the
                # outage opens the circuit when it gives up.
                began = attempt_started if attempt_started is not None else now
                if budget is not None and budget.failures <= 1:
                    began = min(began, budget.started)
                self.outage_since = began
            self._failures += 1
            if role == PROBE:
                self._probing = False
                self._probes += 1
            if self._open:
                self._open_probes += 1
                delay = self._open_interval(settings)
                self._next_probe_at = now + delay
            else:
                delay = policy.delay(self._failures) if policy is not None else 0.0
                if role == PROBE or self._next_probe_at < now:
                    self._next_probe_at = now + delay
                outage = now - self.outage_since
                deadline = policy.deadline if policy is not None else float("inf")
                if outage >= deadline or (
                    settings.threshold and self._failures >= settings.threshold
                ):
                    delay = self._open_locked(now, settings, "outage", events)
            self._cond.notify_all()
            outage_so_far = now - (self.outage_since or now)
        attempt_no = budget.failures if budget is not None else self._failures
        max_attempts = policy.max_attempts if policy is not None else 0
        sqlstate = sqlstate_of(exc)
        logger.warning(
            "Connection attempt %d to database %r failed (SQLSTATE %s, %s); "
            "%.2f s into the outage, next attempt in %.2f s.",
            attempt_no,
            self.alias,
            sqlstate or "-",
            type(exc).__name__,
            outage_so_far,
            delay,
        )
        events.append(
            lambda: signals.connection_retry.send(
                sender=CircuitBreaker,
                alias=self.alias,
                attempt=attempt_no,
                max_attempts=max_attempts,
                delay=delay,
                sqlstate=sqlstate,
                error=exc,
            )
        )
        _emit(events)

    def _open_interval(self, settings: BreakerSettings) -> float:
        growth = 2 ** min(self._open_probes, 30)
        step = max(
            min(settings.max_interval, settings.open_interval * growth), settings.open_interval
        )
        # Jitter down only: many processes probing the same endpoint spread out,
        # and the probe never comes later than the promised interval.
        return step * (0.75 + 0.25 * self._random())

    def _open_locked(
        self, now: float, settings: BreakerSettings, reason: str, events: list[_Event]
    ) -> float:
        self._open = True
        self._open_probes = 0
        interval = self._open_interval(settings)
        self._next_probe_at = now + interval
        stats.increment("breaker_opened", self.alias)
        stats.set_gauge("breaker_open", self.alias, 1)
        events.append(
            lambda: logger.warning(
                "Circuit breaker for database %r opened (%s); callers fail fast until a "
                "probe succeeds.",
                self.alias,
                reason,
            )
        )
        events.append(
            lambda: signals.breaker_opened.send(
                sender=CircuitBreaker, alias=self.alias, retry_after=interval
            )
        )
        return interval

    def record_success(self, role: str) -> bool:
        """A connection attempt succeeded. True when it ended an outage."""
        with self._cond:
            outage_since = self.outage_since
            was_open = self._open
            if role == PROBE:
                self._probing = False
                self._probes += 1
            if outage_since is None:
                if role == PROBE:
                    self._cond.notify_all()
                return False
            outage = self._clock() - outage_since
            self._close_locked()
            self._cond.notify_all()
        if was_open:
            stats.set_gauge("breaker_open", self.alias, 0)
        logger.warning("Database %r reachable again after %.2f s.", self.alias, outage)
        signals.breaker_closed.send(sender=CircuitBreaker, alias=self.alias, outage=outage)
        return True

    def _close_locked(self) -> None:
        self.outage_since = None
        self._failures = 0
        self._open = False
        self._open_probes = 0
        self._next_probe_at = 0.0
        self._refusal_logged = False


def _emit(events: list[_Event]) -> None:
    for event in events:
        event()


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
