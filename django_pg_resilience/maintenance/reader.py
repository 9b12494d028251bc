"""This process's view of the switch, re-read at most every ``MAINTENANCE_CHECK_INTERVAL``.

A switch that cannot be read never turns maintenance off: the process keeps
what it last read (or answers 503 when ``MAINTENANCE_ON_WHEN_UNREADABLE``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from django_pg_resilience import conf
from django_pg_resilience.maintenance.state import MaintenanceState, default_retry_after
from django_pg_resilience.maintenance.switches import Switch, SwitchUnreadable, switch

__all__ = ["acurrent_state", "current_state", "turn_off", "turn_on"]

logger = logging.getLogger("django_pg_resilience.maintenance")


def turn_on(retry_after: int | None = None, message: str = "") -> MaintenanceState:
    """Turn maintenance on for every process (seen within MAINTENANCE_CHECK_INTERVAL)."""
    seconds = default_retry_after() if retry_after is None else max(1, math.ceil(retry_after))
    state = MaintenanceState(retry_after=seconds, message=message, since=time.time())
    switch().write(state)
    _reader.forget()
    return state


def turn_off() -> bool:
    """Turn maintenance off; False when it was not on."""
    was_on = switch().clear()
    _reader.forget()
    return was_on


class _Reader:
    """What this process last read of the switch, reused for MAINTENANCE_CHECK_INTERVAL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._switch: Switch | None = None
        self._checked = -math.inf
        self._state: MaintenanceState | None = None
        # A read succeeded: _state is the last known state, kept while the switch is unreadable.
        self._known = False
        # The failure being reported (once, until a read succeeds again).
        self._failure: str | None = None

    def forget(self) -> None:
        """Read the switch again at the next request (this process just changed it)."""
        with self._lock:
            self._switch = None
            self._checked = -math.inf

    def reset(self) -> None:
        """Forget all of it: the settings changed, the switch may be another one."""
        with self._lock:
            self._switch = None
            self._checked = -math.inf
            self._state = None
            self._known = False
            self._failure = None

    def _fresh(self, now: float) -> bool:
        return now - self._checked < conf.app_settings().MAINTENANCE_CHECK_INTERVAL

    def state(self) -> MaintenanceState | None:
        now = time.monotonic()
        if self._fresh(now):
            return self._state
        # One reader per process at a time; the others keep the last answer,
        # except before the first one, when there is no answer to keep.
        if not self._lock.acquire(blocking=self._checked == -math.inf):
            return self._state
        try:
            state = self._read()
            self._log_change(state)
            self._state = state
            self._checked = now
            return state
        finally:
            self._lock.release()

    async def astate(self) -> MaintenanceState | None:
        if self._fresh(time.monotonic()) or (self._lock.locked() and self._checked != -math.inf):
            return self._state
        # The read (a cache round trip, a stat on a network disk) runs in a
        # thread: never on the event loop, nor queued behind the sync views'
        # one thread (thread_sensitive=False).
        return await sync_to_async(self.state, thread_sensitive=False)()

    def _read(self) -> MaintenanceState | None:
        try:
            if self._switch is None:
                self._switch = switch()
            state = self._switch.read()
        except (SwitchUnreadable, ImproperlyConfigured) as exc:
            return self._when_unreadable(exc)
        if self._failure is not None:
            self._failure = None
            logger.warning(
                "The maintenance switch is readable again (%s).", self._switch.describe()
            )
        self._known = True
        return state

    def _when_unreadable(self, exc: Exception) -> MaintenanceState | None:
        present = isinstance(exc, SwitchUnreadable) and exc.present
        state: MaintenanceState | None
        if present or conf.app_settings().MAINTENANCE_ON_WHEN_UNREADABLE:
            state = self._state or MaintenanceState(retry_after=default_retry_after())
        else:
            state = self._state  # never silently off: what was last read holds
        if self._failure is None:
            self._failure = str(exc)
            logger.error(
                "Cannot read the maintenance switch (%s); %s.",
                exc,
                self._consequence(state, present=present),
            )
        return state

    def _consequence(self, state: MaintenanceState | None, *, present: bool) -> str:
        if present:
            return "the file is there, so maintenance is on"
        if self._known and state is self._state:
            return f"maintenance stays {'off' if state is None else 'on'}, as last read"
        if state is not None:
            return "maintenance is on (MAINTENANCE_ON_WHEN_UNREADABLE)"
        return (
            "this process has not read it yet and serves the site "
            "(MAINTENANCE_ON_WHEN_UNREADABLE = True answers 503 instead)"
        )

    def _log_change(self, state: MaintenanceState | None) -> None:
        if (state is None) == (self._state is None):
            return
        if state is None:
            logger.warning("Planned maintenance is over: serving the site again.")
        else:
            where = self._switch.describe() if self._switch is not None else "switch unreadable"
            logger.warning(
                "Planned maintenance is on (%s): answering 503, Retry-After %ss.",
                where,
                state.retry_after,
            )


_reader = _Reader()


def current_state() -> MaintenanceState | None:
    """Maintenance as this process sees it now (None: off)."""
    return _reader.state()


async def acurrent_state() -> MaintenanceState | None:
    """:func:`current_state` for the event loop: a read that is due runs in a thread."""
    return await _reader.astate()


def reset() -> None:
    """Forget what this process last read of the switch (tests, a setting change)."""
    _reader.reset()


def _reset_on_settings_change(*, setting: str, **kwargs: Any) -> None:
    if setting in ("PG_RESILIENCE", "CACHES", "BASE_DIR"):
        _reader.reset()


setting_changed.connect(_reset_on_settings_change, dispatch_uid="pg_resilience.maintenance")
