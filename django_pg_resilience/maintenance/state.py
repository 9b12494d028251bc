"""The maintenance switch: its state, where it is kept (a file or a cache), and this
process's view of it, re-read at most every ``MAINTENANCE_CHECK_INTERVAL``.

A switch that cannot be read never turns maintenance off: the process keeps
what it last read (or answers 503 when ``MAINTENANCE_ON_WHEN_UNREADABLE``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import math
import os
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from django_pg_resilience import conf

__all__ = [
    "CACHE_KEY",
    "DEFAULT_FILE_NAME",
    "CacheSwitch",
    "FileSwitch",
    "MaintenanceMode",
    "MaintenanceState",
    "Switch",
    "SwitchUnreadable",
    "acurrent_state",
    "current_state",
    "describe_file_type",
    "maintenance_file",
    "switch",
    "turn_off",
    "turn_on",
]

logger = logging.getLogger("django_pg_resilience.maintenance")

#: The cache key of the switch (under the cache's own KEY_PREFIX).
CACHE_KEY = "django_pg_resilience:maintenance"
#: The switch file's name in ``settings.BASE_DIR`` when MAINTENANCE_FILE is not set.
DEFAULT_FILE_NAME = ".pg-resilience-maintenance"
# Most of the file read: the command writes a few hundred bytes.
_MAX_FILE_SIZE = 64 * 1024
# A symlink is not followed, and a FIFO or a device opens without waiting for a peer.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


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


class SwitchUnreadable(Exception):
    """The switch could not be read (a permission or I/O error, not a regular file)."""

    def __init__(self, where: str, reason: str, *, present: bool = False) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason
        #: A regular file is there, only its content could not be read: existence
        #: is the switch, so maintenance is on.
        self.present = present


class Switch(Protocol):
    def read(self) -> MaintenanceState | None:
        """The state (None: off); raises :class:`SwitchUnreadable` when it cannot tell."""
        ...

    def write(self, state: MaintenanceState) -> None: ...
    def clear(self) -> bool: ...
    def describe(self) -> str: ...


def _project_directory() -> str | None:
    base_dir = getattr(settings, "BASE_DIR", None)
    if isinstance(base_dir, str | os.PathLike):
        directory = os.fspath(base_dir)
        if isinstance(directory, str) and directory:
            return os.path.abspath(directory)
    return None


def maintenance_file() -> str:
    """The switch file: MAINTENANCE_FILE, else ``.pg-resilience-maintenance`` in BASE_DIR.

    Raises ImproperlyConfigured when there is neither (``pg_resilience.E604``):
    a shared temporary directory is no place for it, any local user could
    turn the site on or off there.
    """
    configured = conf.app_settings().MAINTENANCE_FILE
    if configured:
        return configured
    directory = _project_directory()
    if directory is None:
        raise ImproperlyConfigured(
            "The maintenance switch has no file: PG_RESILIENCE['MAINTENANCE_FILE'] is not "
            "set and settings.BASE_DIR, where it defaults to, is not defined."
        )
    return os.path.join(directory, DEFAULT_FILE_NAME)


def describe_file_type(mode: int) -> str:
    """What a non-regular file is, in words ("a symbolic link", "a FIFO", ...)."""
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _os_reason(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc.strerror}" if exc.strerror else type(exc).__name__


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


class FileSwitch:
    """The switch as a regular file: present is on. One ``os.lstat`` per read; parsed
    when it changed. Never follows a symlink nor opens anything but a regular file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[int, int, int, int] | None = None
        self._state: MaintenanceState | None = None

    def read(self) -> MaintenanceState | None:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SwitchUnreadable(self.describe(), _os_reason(exc)) from None
        self._require_regular(info)
        if _identity(info) != self._seen or self._state is None:
            self._state, self._seen = self._parse()
        return self._state

    def _require_regular(self, info: os.stat_result) -> None:
        if not stat.S_ISREG(info.st_mode):
            # A FIFO would hang the reader, a directory or a link is nothing the
            # command writes: not a switch, whoever put it there.
            kind = describe_file_type(info.st_mode)
            raise SwitchUnreadable(self.describe(), f"not a regular file but {kind}")

    def _parse(self) -> tuple[MaintenanceState | None, tuple[int, int, int, int] | None]:
        try:
            fd = os.open(self.path, _OPEN_FLAGS)
        except FileNotFoundError:
            return None, None  # removed since the lstat: off
        except OSError as exc:
            # ELOOP: a symlink replaced it since the lstat. Anything else: the
            # regular file is there, and existence is the switch.
            present = exc.errno != errno.ELOOP
            raise SwitchUnreadable(self.describe(), _os_reason(exc), present=present) from None
        try:
            info = os.fstat(fd)
            self._require_regular(info)
            text = os.read(fd, _MAX_FILE_SIZE)
        except OSError as exc:
            raise SwitchUnreadable(self.describe(), _os_reason(exc), present=True) from None
        finally:
            os.close(fd)
        return MaintenanceState.from_json(text), _identity(info)

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

    def _cache(self) -> Any:
        from django.core.cache import caches

        return caches[self.alias]

    def read(self) -> MaintenanceState | None:
        try:
            value = self._cache().get(CACHE_KEY)
        except Exception as exc:
            # The class only: a cache client's message can carry its URL and password.
            raise SwitchUnreadable(self.describe(), type(exc).__name__) from None
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
            state = self._state or MaintenanceState(retry_after=_default_retry_after())
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


def _reset_on_settings_change(*, setting: str, **kwargs: Any) -> None:
    if setting in ("PG_RESILIENCE", "CACHES", "BASE_DIR"):
        _reader.reset()


setting_changed.connect(_reset_on_settings_change, dispatch_uid="pg_resilience.maintenance")
