"""The cluster report, computed by one caller at a time and reused for a few seconds.

Every endpoint that shows the cluster's state (``/readyz``, ``/healthz/cluster``,
``/metrics``) reads it here, so any number of callers cost at most one probe
round per ``HEALTH_CACHE_SECONDS`` per process: during an outage, the health
endpoints must not add connections to a struggling database.

The round runs in a daemon thread, never in a caller's: a caller waits for it
at most as long as it asked to (``wait=0`` for a liveness-like answer) and then
gets the newest report there is, possibly an older one, possibly none yet.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_pg_resilience.conf import app_settings
from django_pg_resilience.health.digitalocean import TOKEN_ENV
from django_pg_resilience.health.report import HealthReport, run_checks

__all__ = ["CachedReport", "ReportCache", "cluster_report", "round_wait"]


@dataclasses.dataclass(frozen=True)
class CachedReport:
    """The newest report (None before the first round ends) or why there is none."""

    report: HealthReport | None
    #: A configuration error the last round raised (safe to show to the token holder).
    error: str | None = None
    #: Seconds since the round that produced this answer ended (None: no round yet).
    age_seconds: float | None = None


class ReportCache:
    """Single-flight, time-bounded reuse of ``compute()``'s report."""

    def __init__(
        self, compute: Callable[[], HealthReport], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._compute = compute
        self._clock = clock
        self._changed = threading.Condition()
        self._report: HealthReport | None = None
        self._error: str | None = None
        self._finished_at: float | None = None
        self._running = False
        #: Bumped by clear(): a round started before it does not store its outcome.
        self._generation = 0

    def get(self, max_age: float, wait: float) -> CachedReport:
        """A report at most ``max_age`` s old if one arrives within ``wait`` s, else the newest."""
        with self._changed:
            if not self._fresh(max_age) and not self._running:
                self._start_round()
            if wait > 0:
                self._changed.wait_for(lambda: self._fresh(max_age), timeout=wait)
            return self._answer()

    def clear(self) -> None:
        """Forget the report (settings changed); a round in flight is not stored."""
        with self._changed:
            self._generation += 1
            self._report, self._error, self._finished_at = None, None, None
            self._running = False
            self._changed.notify_all()

    def _fresh(self, max_age: float) -> bool:
        return self._finished_at is not None and self._clock() - self._finished_at <= max_age

    def _answer(self) -> CachedReport:
        age = None if self._finished_at is None else self._clock() - self._finished_at
        return CachedReport(self._report, self._error, age)

    def _start_round(self) -> None:
        self._running = True
        generation = self._generation
        threading.Thread(
            target=self._round, args=(generation,), name="health-report", daemon=True
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
                self._report = report
            self._error = error
            self._changed.notify_all()


def _with_provider() -> bool:
    """Ask DigitalOcean too when the cluster is named and the token is there."""
    return bool(app_settings().DIGITALOCEAN_CLUSTER and os.environ.get(TOKEN_ENV, "").strip())


def _compute() -> HealthReport:
    return run_checks(digitalocean=_with_provider())


_cache = ReportCache(_compute)


def round_wait() -> float:
    """How long a caller may wait for a round: the probes' timeout (twice with the provider)."""
    timeout = app_settings().HEALTH_TIMEOUT
    return timeout * (2 if _with_provider() else 1) + 0.5


def cluster_report(wait: float | None = None) -> CachedReport:
    """The process's cluster report, at most ``HEALTH_CACHE_SECONDS`` old when one can be had.

    ``wait`` defaults to :func:`round_wait`; 0 never waits (the report of an
    earlier round, or none, while a new one runs in the background).
    """
    settings = app_settings()
    return _cache.get(settings.HEALTH_CACHE_SECONDS, round_wait() if wait is None else wait)


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting in ("PG_RESILIENCE", "DATABASES"):
        _cache.clear()
