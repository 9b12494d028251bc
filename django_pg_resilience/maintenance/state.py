"""The maintenance switch: its state, where it is kept (a file or a cache), and this
process's view of it, re-read at most every ``MAINTENANCE_CHECK_INTERVAL``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from django.core.signals import setting_changed

from django_pg_resilience import conf

__all__ = [
    "CACHE_KEY",
    "CacheSwitch",
    "FileSwitch",
    "MaintenanceMode",
    "MaintenanceState",
    "Switch",
    "current_state",
    "maintenance_file",
    "switch",
    "turn_off",
    "turn_on",
]

logger = logging.getLogger("django_pg_resilience.maintenance")

#: The cache key of the switch (under the cache's own KEY_PREFIX).
CACHE_KEY = "django_pg_resilience:maintenance"


@dataclass(frozen=True)
class MaintenanceState:
    """Maintenance is on: what the 503 says."""

    retry_after: int
    message: str = ""
    #: Unix time it was turned on (0 when unknown, e.g. a touched file).
    since: float = 0.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes | None) -> MaintenanceState:
        """Parse what :meth:`to_json` wrote; anything else is "on" with the defaults."""
        try:
            data = json.loads(text or "")
            retry_after = data["retry_after"]
            if not isinstance(retry_after, int) or isinstance(retry_after, bool):
                raise TypeError("retry_after")
            message = data.get("message", "")
            since = data.get("since", 0.0)
            return cls(
                retry_after=max(1, retry_after),
                message=message if isinstance(message, str) else "",
                since=float(since) if isinstance(since, int | float) else 0.0,
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls(retry_after=_default_retry_after())


class MaintenanceMode(Exception):
    """The reason of a maintenance 503; carries its Retry-After to ``unavailable_response``."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("planned maintenance")
        self.retry_after = retry_after


def _default_retry_after() -> int:
    return max(1, conf.app_settings().MAINTENANCE_RETRY_AFTER)


class Switch(Protocol):
    def read(self) -> MaintenanceState | None: ...
    def write(self, state: MaintenanceState) -> None: ...
    def clear(self) -> bool: ...
    def describe(self) -> str: ...


def maintenance_file() -> str:
    """The switch file: the setting, or one per settings module in the temp directory."""
    configured = conf.app_settings().MAINTENANCE_FILE
    if configured:
        return configured
    module = os.environ.get("DJANGO_SETTINGS_MODULE") or "settings"
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", module)
    return os.path.join(tempfile.gettempdir(), f"django-pg-resilience-maintenance-{name}")


class _FailureReport:
    """One ERROR line when the switch cannot be read, not one per check; again after a recovery."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.reported = False

    def failed(self, exc: BaseException, consequence: str = "the site is served as usual") -> None:
        if not self.reported:
            self.reported = True
            logger.error(
                "Cannot read the maintenance switch (%s: %s); %s.",
                self.where,
                type(exc).__name__,
                consequence,
            )

    def recovered(self) -> None:
        self.reported = False


class FileSwitch:
    """The switch as a file: present is on. One ``os.stat`` per read; parsed when it changed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._state: MaintenanceState | None = None
        self._failing = _FailureReport(f"file {path}")

    def read(self) -> MaintenanceState | None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            # The site stays up rather than down for a permission problem.
            self._failing.failed(exc)
            return None
        self._failing.recovered()
        seen = (info.st_ino, info.st_size, info.st_mtime_ns)
        if seen != self._seen or self._state is None:
            try:
                with open(self.path, "rb") as file:
                    text = file.read(64 * 1024)
            except FileNotFoundError:
                return None
            except OSError as exc:
                # It exists, and existence is the switch: on, with the defaults.
                self._failing.failed(exc, "maintenance is on with the default Retry-After")
                text = b""
            self._state = MaintenanceState.from_json(text)
            self._seen = seen
        return self._state

    def write(self, state: MaintenanceState) -> None:
        # Written aside and renamed: a process never reads half a file, and a
        # symlink planted at the path is replaced, not followed.
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".maintenance-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(state.to_json())
            os.chmod(temporary, 0o644)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def clear(self) -> bool:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        return True

    def describe(self) -> str:
        return f"file {self.path}"


class CacheSwitch:
    """The switch as a key of a shared cache (no expiry): present is on."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._failing = _FailureReport(f"cache {alias!r}")

    def _cache(self) -> Any:
        from django.core.cache import caches

        return caches[self.alias]

    def read(self) -> MaintenanceState | None:
        try:
            value = self._cache().get(CACHE_KEY)
        except Exception as exc:
            self._failing.failed(exc)
            return None
        self._failing.recovered()
        return None if value is None else MaintenanceState.from_json(value)

    def write(self, state: MaintenanceState) -> None:
        self._cache().set(CACHE_KEY, state.to_json(), timeout=None)

    def clear(self) -> bool:
        return bool(self._cache().delete(CACHE_KEY))

    def describe(self) -> str:
        return f"cache {self.alias!r}"


def switch() -> Switch:
    """Where the switch lives under the current settings."""
    alias = conf.app_settings().MAINTENANCE_CACHE
    return CacheSwitch(alias) if alias else FileSwitch(maintenance_file())


def turn_on(retry_after: int | None = None, message: str = "") -> MaintenanceState:
    """Turn maintenance on for every process (seen within MAINTENANCE_CHECK_INTERVAL)."""
    seconds = _default_retry_after() if retry_after is None else max(1, math.ceil(retry_after))
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

    def forget(self) -> None:
        with self._lock:
            self._switch = None
            self._checked = -math.inf

    def state(self) -> MaintenanceState | None:
        interval = conf.app_settings().MAINTENANCE_CHECK_INTERVAL
        now = time.monotonic()
        if now - self._checked < interval:
            return self._state
        # One reader per process at a time; the others keep the last answer,
        # except before the first one, when there is no answer to keep.
        if not self._lock.acquire(blocking=self._checked == -math.inf):
            return self._state
        try:
            if self._switch is None:
                self._switch = switch()
            state = self._switch.read()
            if (state is None) != (self._state is None):
                if state is None:
                    logger.warning("Planned maintenance is over: serving the site again.")
                else:
                    logger.warning(
                        "Planned maintenance is on (%s): answering 503, Retry-After %ss.",
                        self._switch.describe(),
                        state.retry_after,
                    )
            self._state = state
            self._checked = now
            return state
        finally:
            self._lock.release()


_reader = _Reader()


def current_state() -> MaintenanceState | None:
    """Maintenance as this process sees it now (None: off)."""
    return _reader.state()


def _forget_on_settings_change(*, setting: str, **kwargs: Any) -> None:
    if setting in ("PG_RESILIENCE", "CACHES"):
        _reader.forget()


setting_changed.connect(_forget_on_settings_change, dispatch_uid="pg_resilience.maintenance")
