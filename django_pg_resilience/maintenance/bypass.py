"""Who gets the site during maintenance (health endpoints, paths, addresses, staff), and
the 503 everyone else gets. Nothing here reads the database."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.functional import empty

from django_pg_resilience import conf
from django_pg_resilience.maintenance.state import MaintenanceMode, MaintenanceState
from django_pg_resilience.unavailable import unavailable_response

__all__ = [
    "DATABASE_CACHE",
    "MAINTENANCE_CODE",
    "STAFF_SESSION_KEY",
    "bad_bypass_ips",
    "deferred_for_staff",
    "is_bypassed",
    "is_staff_without_database",
    "maintenance_response",
    "path_entry_problem",
    "remember_staff_at_login",
    "take_deferred",
    "usable_path_prefixes",
]

#: The error code of the maintenance JSON 503.
MAINTENANCE_CODE = "maintenance"
#: Session key set at login: whether the user is staff, readable without the database.
STAFF_SESSION_KEY = "_pg_resilience_staff"
#: The database cache: never a place for the switch, nor for sessions read during maintenance.
DATABASE_CACHE = "django.core.cache.backends.db.DatabaseCache"

# Session engines whose sessions are read without the database.
_DATABASE_FREE_SESSIONS = frozenset(
    {
        "django.contrib.sessions.backends.signed_cookies",
        "django.contrib.sessions.backends.cache",
    }
)
_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
# Where the middleware leaves a maintenance answer that waits for the user to be known.
_DEFERRED = "_pg_resilience_maintenance"
# What staff may still do anywhere during maintenance: read.
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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


def path_entry_problem(entry: str | None) -> str | None:
    """Why a path prefix entry never serves as one ("everything", "nothing"), or None."""
    if entry is None:
        return None
    if not entry.strip("/"):
        return "everything"  # "" or "/": every path would start with it
    if not entry.startswith("/"):
        return "nothing"  # request paths always start with "/"
    return None


@functools.lru_cache(maxsize=16)
def usable_path_prefixes(entries: tuple[str | None, ...]) -> tuple[str, ...]:
    """The entries that are path prefixes; the others are left out (reported by W603, W604).

    An empty entry would match every path and pass everyone: failing closed,
    it passes no one.
    """
    return tuple(entry for entry in entries if entry and path_entry_problem(entry) is None)


def _path_matches(path: str, prefixes: Sequence[str]) -> bool:
    """Whether ``path`` is one of ``prefixes`` or under one, by whole segments."""
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
    prefixes = usable_path_prefixes((*app.MAINTENANCE_BYPASS_PATHS, app.HEALTH_METRICS_PATH))
    if health_view or _path_matches(request.path_info, prefixes):
        return True
    if webhook_view and app.MAINTENANCE_BYPASS_WEBHOOKS:
        return True
    return _client_in_bypass_networks(request)


def deferred_for_staff(request: HttpRequest, state: MaintenanceState) -> bool:
    """Leave the answer until the view, where the user is known, if staff may pass.

    AuthenticationMiddleware runs after this middleware, so ``request.user``
    does not exist yet when the request arrives. Staff only read (GET, HEAD,
    OPTIONS), except under MAINTENANCE_STAFF_WRITE_PATHS: the writes are what
    maintenance is there to stop.
    """
    app = conf.app_settings()
    if not app.MAINTENANCE_BYPASS_STAFF:
        return False
    if request.method not in _READ_METHODS and not _path_matches(
        request.path_info, usable_path_prefixes(app.MAINTENANCE_STAFF_WRITE_PATHS)
    ):
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
    return unavailable_response(
        request,
        MaintenanceMode(state.retry_after),
        bare=bare,
        code=MAINTENANCE_CODE,
        message=state.message,
    )
