"""The cluster report, computed by one round at a time and reused for a few seconds.

Every endpoint that shows the cluster's state (``/readyz``, ``/healthz/cluster``,
``/metrics``) reads it here. Whatever the traffic, a process runs at most one
probe round at a time, and starts one only when the last one ended more than
``HEALTH_CACHE_SECONDS`` ago (never less than :data:`MIN_ROUND_INTERVAL`, even
for a token holder who asks for a fresh report): during an outage, the health
endpoints must not add connections to a struggling database, and a loop of
anonymous requests must not spend the provider's API quota (its answers are
kept longer still, see :mod:`.digitalocean_provider`).

The round runs in a daemon thread, never in a caller's: a caller waits for it
at most as long as it asked to (``wait=0`` for a liveness-like answer) and then
gets the newest report there is, possibly an older one, possibly none yet.

A round that fails (raises) keeps the previous report but marks it ``stale``;
a report older than ``HEALTH_MAX_REPORT_AGE`` is ``expired``: its status no
longer counts, the endpoints say UNKNOWN (and an enforced readiness check
fails), because nothing has been measured for that long.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_pg_resilience import stats
from django_pg_resilience.conf import app_settings
from django_pg_resilience.health.evaluate import Thresholds
from django_pg_resilience.health.providers import RoundContext
from django_pg_resilience.health.report import HealthReport, round_budget, run_checks
from django_pg_resilience.health.status import Status

__all__ = ["MIN_ROUND_INTERVAL", "CachedReport", "ReportCache", "cluster_report", "round_wait"]

#: Seconds between the end of a round and the start of the next, at least, whatever
#: HEALTH_CACHE_SECONDS says and whoever asks.
MIN_ROUND_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True)
class CachedReport:
    """The newest report (None before the first round ends) or why there is none."""

    report: HealthReport | None
    #: Why the last round produced no report (safe to show to the token holder).
    error: str | None = None
    #: Seconds since the round that produced ``report`` ended (None: no report yet).
    age_seconds: float | None = None
    #: The last round failed: ``report`` is an earlier round's.
    stale: bool = False
    #: ``report`` is older than HEALTH_MAX_REPORT_AGE: it vouches for nothing now.
    expired: bool = False

    @property
    def current(self) -> HealthReport | None:
        """The report, unless there is none or it has expired."""
        return None if self.expired else self.report

    @property
    def status(self) -> Status:
        """The report's status; UNKNOWN without a current report."""
        return Status.UNKNOWN if self.current is None else self.current.status

    @property
    def why_unknown(self) -> str:
        """Why there is no current report (for a message)."""
        if self.report is not None and self.expired:
            why = f"the last report is {self.age_seconds or 0:.0f} s old"
            return f"{why} ({self.error})" if self.error else why
        return self.error or "no cluster report yet (the first round is running)"

    def expire_after(self, max_report_age: float) -> CachedReport:
        """This answer, ``expired`` when its report is older than ``max_report_age``."""
        too_old = self.age_seconds is not None and self.age_seconds > max_report_age
        return dataclasses.replace(self, expired=too_old)


class ReportCache:
    """Single-flight, rate-limited reuse of ``compute()``'s report."""

    def __init__(
        self, compute: Callable[[], HealthReport], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._compute = compute
        self._clock = clock
        self._changed = threading.Condition()
        self._report: HealthReport | None = None
        #: When the round that produced ``_report`` ended.
        self._report_at: float | None = None
        self._error: str | None = None
        #: When the last round, failed or not, ended.
        self._finished_at: float | None = None
        self._running = False
        #: Bumped by clear(): a round started before it does not store its outcome.
        self._generation = 0

    def get(self, max_age: float, wait: float, trigger: str = "scheduled") -> CachedReport:
        """A report from a round that ended at most ``max_age`` s ago (never less than
        :data:`MIN_ROUND_INTERVAL`) if one arrives within ``wait`` s, else the newest."""
        max_age = max(max_age, MIN_ROUND_INTERVAL)
        with self._changed:
            if not self._fresh(max_age) and not self._running:
                self._start_round(trigger)
            if wait > 0:
                self._changed.wait_for(lambda: self._fresh(max_age), timeout=wait)
            return self._answer()

    def clear(self) -> None:
        """Forget the report (settings changed); a round in flight is not stored."""
        with self._changed:
            self._generation += 1
            self._report, self._report_at, self._error = None, None, None
            self._finished_at = None
            self._running = False
            self._changed.notify_all()

    def _fresh(self, max_age: float) -> bool:
        return self._finished_at is not None and self._clock() - self._finished_at <= max_age

    def _answer(self) -> CachedReport:
        age = None if self._report_at is None else self._clock() - self._report_at
        stale = self._report is not None and self._error is not None
        return CachedReport(self._report, self._error, age, stale=stale)

    def _start_round(self, trigger: str) -> None:
        self._running = True
        stats.increment("health_rounds", trigger)
        threading.Thread(
            target=self._round, args=(self._generation,), name="health-report", daemon=True
        ).start()

    def _round(self, generation: int) -> None:
        report: HealthReport | None = None
        error: str | None = None
        try:
            report = self._compute()
        except ImproperlyConfigured as exc:
            error = f"configuration error: {exc}"
        except Exception as exc:  # the next round tries again; the callers see why
            error = f"the checks failed: {exc.__class__.__name__}"
        with self._changed:
            if generation != self._generation:
                return
            self._running = False
            self._finished_at = self._clock()
            if report is not None:
                self._report, self._report_at = report, self._finished_at
            self._error = error
            self._changed.notify_all()


def _compute() -> HealthReport:
    # digitalocean=None: asked when configured; fresh=False: providers may answer
    # from their own caches (the DigitalOcean API's quota).
    return run_checks(digitalocean=None, fresh=False)


_cache = ReportCache(_compute)


def round_wait() -> float:
    """How long a caller may wait for a round: the longest the round may take, plus a margin."""
    settings = app_settings()
    context = RoundContext(
        settings=settings,
        thresholds=Thresholds.from_settings(settings),
        timeout=settings.HEALTH_TIMEOUT,
        fresh=False,
    )
    return round_budget(context) + 0.5


def cluster_report(wait: float | None = None, *, fresh: bool = False) -> CachedReport:
    """The process's cluster report, at most ``HEALTH_CACHE_SECONDS`` old (never more than
    ``HEALTH_MAX_REPORT_AGE``) when one can be had.

    ``wait`` defaults to :func:`round_wait`; 0 never waits (the report of an
    earlier round, or none, while a new one runs in the background). ``fresh``
    (a token holder's request) asks for a report at most :data:`MIN_ROUND_INTERVAL`
    old. The answer is ``expired`` past ``HEALTH_MAX_REPORT_AGE``.
    """
    settings = app_settings()
    # Never reused past the age where it expires: it would stay UNKNOWN until then.
    reuse = min(settings.HEALTH_CACHE_SECONDS, settings.HEALTH_MAX_REPORT_AGE)
    max_age = MIN_ROUND_INTERVAL if fresh else reuse
    cached = _cache.get(
        max_age,
        round_wait() if wait is None else wait,
        trigger="forced" if fresh else "scheduled",
    )
    return cached.expire_after(settings.HEALTH_MAX_REPORT_AGE)


def forget() -> None:
    """Drop the cached cluster report (tests, a setting change)."""
    _cache.clear()


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting in ("PG_RESILIENCE", "DATABASES"):
        _cache.clear()
