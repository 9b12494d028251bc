"""Where the switch is kept: a file (present is on) or a key of a shared cache.

A file is read without following a symlink, and only when it is a regular
file: anything else at the path is a switch that cannot be read, never "on".
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from django_pg_resilience import conf
from django_pg_resilience.maintenance.state import MaintenanceState

__all__ = [
    "CACHE_KEY",
    "DEFAULT_FILE_NAME",
    "CacheSwitch",
    "FileSwitch",
    "Switch",
    "SwitchUnreadable",
    "describe_file_type",
    "maintenance_file",
    "switch",
]

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
