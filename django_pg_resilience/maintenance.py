"""Planned maintenance: one switch every process sees, kept outside the database.

``manage.py maintenance on`` writes the switch; the 503 middleware reads it and
answers with the outage page (or JSON) until ``manage.py maintenance off``. The
switch lives where a process can read it while the database is being switched
over: a file (default, ``PG_RESILIENCE["MAINTENANCE_FILE"]``) or a shared cache
(``PG_RESILIENCE["MAINTENANCE_CACHE"]``, an alias of ``CACHES``).

Reading it costs one ``os.stat`` (or one cache get) per process every
``MAINTENANCE_CHECK_INTERVAL`` seconds; the file is read again only when its
inode, size or modification time changed. The file's existence is what turns
maintenance on: ``touch`` works too, and a file that is not the JSON the command
writes means "on, with the default Retry-After".
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ipaddress
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.utils.functional import empty

from django_pg_resilience import conf

__all__ = [
    "MAINTENANCE_CODE",
    "STAFF_SESSION_KEY",
    "CacheSwitch",
    "FileSwitch",
    "MaintenanceMode",
    "MaintenanceState",
    "current_state",
    "deferred_for_staff",
    "is_bypassed",
    "is_staff_without_database",
    "maintenance_file",
    "remember_staff_at_login",
    "switch",
    "turn_off",
    "turn_on",
]

logger = logging.getLogger("django_pg_resilience.maintenance")

#: The error code of the maintenance JSON 503.
MAINTENANCE_CODE = "maintenance"
#: Session key set at login: whether the user is staff, readable without the database.
STAFF_SESSION_KEY = "_pg_resilience_staff"
#: The cache key of the switch (under the cache's own KEY_PREFIX).
CACHE_KEY = "django_pg_resilience:maintenance"

# Session engines whose sessions are read without the database.
_DATABASE_FREE_SESSIONS = frozenset(
    {
        "django.contrib.sessions.backends.signed_cookies",
        "django.contrib.sessions.backends.cache",
    }
)
DATABASE_CACHE = "django.core.cache.backends.db.DatabaseCache"
_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
# Where the middleware leaves a maintenance answer that waits for the user to be known.
_DEFERRED = "_pg_resilience_maintenance"


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


# --- who gets the site anyway ---


@functools.lru_cache(maxsize=8)
def _networks(
    entries: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue  # reported by pg_resilience.E601
    return tuple(networks)


def bad_bypass_ips(entries: Sequence[str]) -> list[str]:
    """The entries of MAINTENANCE_BYPASS_IPS that are not an address or a network."""
    bad = []
    for entry in entries:
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            bad.append(entry)
    return bad


def _client_in_bypass_networks(request: HttpRequest) -> bool:
    networks = _networks(conf.app_settings().MAINTENANCE_BYPASS_IPS)
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", "").strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _path_matches(path: str, prefixes: Sequence[str]) -> bool:
    for prefix in prefixes:
        stem = prefix.rstrip("/")
        if path in (prefix, stem) or path.startswith(stem + "/"):
            return True
    return False


def is_bypassed(request: HttpRequest, *, health_view: bool, webhook_view: bool) -> bool:
    """True when ``request`` gets the site during maintenance (address, path, kind of view).

    ``health_view`` and ``webhook_view`` say whether the URL resolves to a
    health endpoint or a webhook view (the middleware knows from the view's flags).
    """
    app = conf.app_settings()
    if health_view or _path_matches(
        request.path_info, (*app.MAINTENANCE_BYPASS_PATHS, app.HEALTH_METRICS_PATH)
    ):
        return True
    if webhook_view and app.MAINTENANCE_BYPASS_WEBHOOKS:
        return True
    return _client_in_bypass_networks(request)


def deferred_for_staff(request: HttpRequest, state: MaintenanceState) -> bool:
    """Leave the answer until the view, where the user is known, if staff may pass.

    AuthenticationMiddleware runs after this middleware, so ``request.user``
    does not exist yet when the request arrives.
    """
    if not conf.app_settings().MAINTENANCE_BYPASS_STAFF:
        return False
    if _AUTH_MIDDLEWARE not in list(getattr(settings, "MIDDLEWARE", None) or []):
        return False
    setattr(request, _DEFERRED, state)
    return True


def take_deferred(request: HttpRequest) -> MaintenanceState | None:
    """The maintenance answer left by :func:`deferred_for_staff`, if any."""
    state: MaintenanceState | None = request.__dict__.pop(_DEFERRED, None)
    return state


def _session_is_database_free() -> bool:
    engine = getattr(settings, "SESSION_ENGINE", "django.contrib.sessions.backends.db")
    if engine not in _DATABASE_FREE_SESSIONS:
        return False
    if engine.endswith(".cache"):
        alias = getattr(settings, "SESSION_CACHE_ALIAS", "default")
        backend = (getattr(settings, "CACHES", {}).get(alias) or {}).get("BACKEND", "")
        return backend != DATABASE_CACHE
    return True


def is_staff_without_database(request: HttpRequest) -> bool:
    """Whether the user is staff, decided without a query (False when it cannot be).

    An already loaded ``request.user`` answers. Otherwise loading it would read
    the user table (and, with the default session engine, the session table),
    the very reads maintenance is there to avoid: only a session engine that
    needs no database (signed cookies, or a cache that is not the database
    cache) is read, for the flag :func:`remember_staff_at_login` stored.
    """
    user = request.__dict__.get("user")
    if user is None:
        return False
    wrapped = user.__dict__.get("_wrapped", user)
    if wrapped is not empty:
        return bool(getattr(wrapped, "is_staff", False) and getattr(wrapped, "is_active", True))
    session = getattr(request, "session", None)
    if session is None or not _session_is_database_free():
        return False
    try:
        return session.get(STAFF_SESSION_KEY) is True
    except Exception:
        return False  # a cache that is down: no bypass, never an error page


def remember_staff_at_login(
    sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    """``user_logged_in`` receiver: note in the session whether the user is staff."""
    session = getattr(request, "session", None)
    if session is not None:
        session[STAFF_SESSION_KEY] = bool(getattr(user, "is_staff", False))


def maintenance_response(
    request: HttpRequest, state: MaintenanceState, *, bare: bool
) -> HttpResponse:
    """The maintenance 503: the outage page or JSON, with the maintenance's Retry-After."""
    from django_pg_resilience.unavailable import unavailable_response

    return unavailable_response(
        request,
        MaintenanceMode(state.retry_after),
        bare=bare,
        code=MAINTENANCE_CODE,
        message=state.message,
    )
