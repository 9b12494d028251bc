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
  Probing goes on about once per ``breaker_open_interval`` (jittered, growing to
  at most ``breaker_max_interval``), so the site is back within about a second of
  the database, however long the outage lasted. Where the alias has a
  background prober (:mod:`django_pg_resilience.backend.prober`, the backend's
  default) it makes every probe, off the request path: no caller ever waits for
  one. Without one, the first caller after ``retry_after`` makes the attempt. A
  successful probe closes the circuit.

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

__all__ = ["DIRECT", "PROBE", "BreakerSettings", "CircuitBreaker"]

logger = logging.getLogger("django_pg_resilience")

T = TypeVar("T")

#: The smallest ``retry_after`` given to callers: "now" is not a useful answer.
_MIN_RETRY_AFTER = 0.001
#: How late (seconds) the background prober's probe may be before a refused
#: caller asks for the prober again (a prober thread that died, or a fork).
_PROBER_GRACE = 0.5

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
    #: Seconds of a held outage during which probes follow the caller's backoff (fast:
    #: a blip's end is noticed within milliseconds).
    young_outage: float = 1.0
    #: Past ``young_outage``, probes of a held outage are at least half this apart
    #: (jittered up to it): a process's outage load stays under 2 / interval attempts/s.
    holding_interval: float = 0.25
    #: An open circuit nobody asks for (no caller refused since the last probe) is probed
    #: this rarely: an idle process of a fleet hardly touches a database that is away.
    idle_interval: float = 4.0


class CircuitBreaker:
    """The breaker of one alias in this process. Thread-safe.

    An alias's breaker is built once, with the alias's settings, by its
    :class:`~django_pg_resilience.backend.alias.AliasState`; a breaker of its
    own (a unit test, a simulation) takes ``settings`` and may inject the clock
    and the random source.
    """

    def __init__(
        self,
        alias: str,
        settings: BreakerSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.alias = alias
        self.settings = settings or BreakerSettings()
        #: Called (outside the lock) each time the circuit opens or a refused caller
        #: finds a probe overdue: starts the background prober. None: callers probe.
        self.background_probe: Callable[[], object] | None = None
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
        #: Set when a caller is refused: an open circuit is probed for callers that
        #: want the database (and every ``idle_interval`` without them), not on a timer.
        self.demand = threading.Event()
        self._last_probe_at = 0.0
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
        answered: Callable[[BaseException], bool] | None = None,
    ) -> T:
        """Run ``attempt(timeout)`` through the breaker and return its result.

        ``budget`` is the caller's operation budget (shared with the layers
        above: replay, pool checkout), and ``timeout`` the seconds left in it.
        An error for which ``is_retryable`` is False is raised at once (a bad
        password does not get better); if ``answered`` says the server sent it
        (a full server, a refused login), a probe that met it ends the outage.
        When the budget runs out, or the circuit is open,
        :class:`DatabaseUnavailable` is raised from the last error.
        """
        first_probe = self._probes
        last_error: BaseException | None = None
        while True:
            role = self.admit(budget, first_probe=first_probe, last_error=last_error)
            attempt_started = self._clock()
            try:
                result = attempt(budget.remaining)
            except BaseException as exc:
                if not is_retryable(exc):
                    if role == PROBE and answered is not None and answered(exc):
                        self.record_success(role)
                    else:
                        self.end_probe(role)
                    raise
                stats.increment("connect_failures", self.alias)
                last_error = exc
                budget.failures += 1
                self.record_failure(role, exc, budget, attempt_started)
                continue
            self.record_success(role)
            return result

    def admit(
        self,
        budget: RetryBudget,
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
                        if self.background_probe is not None:
                            # Never a caller: the prober probes (off the request path).
                            overdue = now >= self._next_probe_at + _PROBER_GRACE
                            if not self._probing and self.demand.is_set() and overdue:
                                events.append(self.background_probe)  # is it running?
                            raise self._refuse_locked(now, last_error, events)
                        if self._probing or now < self._next_probe_at:
                            raise self._refuse_locked(now, last_error, events)
                        self._probing = True
                        return PROBE
                    attempts_seen = max(self._probes - first_probe, budget.failures)
                    if now >= deadline_at or attempts_seen >= max(policy.max_attempts, 1):
                        raise self._give_up_locked(now, budget, attempts_seen, last_error, events)
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
        attempts: int,
        error: BaseException | None,
        events: list[_Event],
    ) -> DatabaseUnavailable:
        outage = now - (self.outage_since or now)
        if outage >= budget.policy.deadline and not self._open:
            self._open_locked(now, "deadline", events)
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
        self.demand.set()
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

    def try_probe(self) -> bool:
        """Claim the open circuit's next probe if it is due (the background prober's door).

        Due means: the interval since the last probe has passed, and a caller was
        refused since then, or ``idle_interval`` passed without any. Non-blocking: True
        when the caller now holds the probe (and must end it with :meth:`record_success`,
        :meth:`record_failure` or :meth:`end_probe` with role :data:`PROBE`).
        """
        with self._cond:
            now = self._clock()
            if not self._open or self._probing or self._probe_wait_locked(now)[0] > 0:
                return False
            self._probing = True
            self._last_probe_at = now
            self.demand.clear()
            return True

    def seconds_to_next_probe(self) -> tuple[float, bool] | None:
        """(seconds until the open circuit's next probe is due, whether a refused caller
        would make it due sooner); None when the circuit is not open."""
        with self._cond:
            if not self._open:
                return None
            return self._probe_wait_locked(self._clock())

    def _probe_wait_locked(self, now: float) -> tuple[float, bool]:
        due = self._next_probe_at - now
        if self.demand.is_set():
            return max(due, 0.0), False
        idle_due = self._last_probe_at + self.settings.idle_interval - now
        return max(due, idle_due, 0.0), True

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
        attempt_started: float | None = None,
    ) -> None:
        """A connection attempt failed (made by a caller, a probe, or a thread of the pool's).

        The outage's thresholds are the breaker's own settings; ``budget`` (None
        for an attempt on no caller's behalf) brings the caller's deadline and
        backoff, and dates the outage from when the caller began to connect.
        """
        events: list[_Event] = []
        with self._cond:
            now = self._clock()
            delay = self._count_failure_locked(role, budget, attempt_started, now, events)
            self._cond.notify_all()
            outage_so_far = now - (self.outage_since or now)
        self._report_failure(exc, budget, delay, outage_so_far, events)

    def _count_failure_locked(
        self,
        role: str,
        budget: RetryBudget | None,
        attempt_started: float | None,
        now: float,
        events: list[_Event],
    ) -> float:
        """The failure's effect on the breaker's state; the delay until the next attempt."""
        settings = self.settings
        policy = budget.policy if budget is not None else None
        if self.outage_since is None:
            # The outage began no later than the attempt that found it; when that
            # was the caller's first attempt, no later than the caller's operation
            # (its budget), so a caller that spends its whole deadline in the
            # outage opens the circuit when it gives up.
            began = attempt_started if attempt_started is not None else now
            if budget is not None and budget.failures <= 1:
                began = min(began, budget.recovering_since or began)
            self.outage_since = began
        self._failures += 1
        if role == PROBE:
            self._probing = False
            self._probes += 1
        if self._open:
            self._open_probes += 1
            delay = self._open_interval()
            self._next_probe_at = now + delay
            return delay
        delay = policy.delay(self._failures) if policy is not None else 0.0
        if settings.holding_interval and now - self.outage_since >= settings.young_outage:
            floor = settings.holding_interval * (0.5 + 0.5 * self._random())
            delay = max(delay, floor)
        if role == PROBE or self._next_probe_at < now:
            self._next_probe_at = now + delay
        outage = now - self.outage_since
        deadline = policy.deadline if policy is not None else float("inf")
        if outage >= deadline or (settings.threshold and self._failures >= settings.threshold):
            delay = self._open_locked(now, "outage", events)
        return delay

    def _report_failure(
        self,
        exc: BaseException,
        budget: RetryBudget | None,
        delay: float,
        outage_so_far: float,
        events: list[_Event],
    ) -> None:
        """One log line and the connection_retry signal, outside the lock."""
        policy = budget.policy if budget is not None else None
        attempt_no = budget.failures if budget is not None else self._failures
        max_attempts = policy.max_attempts if policy is not None else 0
        sqlstate = sqlstate_of(exc)
        if budget is not None and budget.exhausted:
            # This caller makes no further attempt: "next attempt in" would be untrue.
            logger.warning(
                "Connection attempt %d to database %r failed (SQLSTATE %s, %s); "
                "%.2f s into the outage; no attempt left for this caller.",
                attempt_no,
                self.alias,
                sqlstate or "-",
                type(exc).__name__,
                outage_so_far,
            )
        else:
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

    def _open_interval(self) -> float:
        settings = self.settings
        growth = 2 ** min(self._open_probes, 30)
        step = max(
            min(settings.max_interval, settings.open_interval * growth), settings.open_interval
        )
        # Jitter down only: many processes probing the same endpoint spread out,
        # and the probe never comes later than the promised interval.
        return step * (0.75 + 0.25 * self._random())

    def _open_locked(self, now: float, reason: str, events: list[_Event]) -> float:
        self._open = True
        self._open_probes = 0
        interval = self._open_interval()
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
        if self.background_probe is not None:
            events.append(self.background_probe)
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
