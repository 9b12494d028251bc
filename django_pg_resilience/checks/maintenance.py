"""The planned maintenance switch's checks (E601-E605, W601-W607)."""

from __future__ import annotations

import os
import stat
from typing import Any

from django.core.checks import CheckMessage, Error, register
from django.core.checks import Warning as CheckWarning

from django_pg_resilience import conf

# --- planned maintenance checks ---
# E601: MAINTENANCE_BYPASS_IPS has an entry that is not an address or a CIDR network.
# E602: MAINTENANCE_CACHE names no CACHES alias, or the database cache (needs the database).
# E603: MAINTENANCE_RETRY_AFTER is 0 (a client would retry at once, forever).
# E604: no switch file: MAINTENANCE_FILE is not set and settings has no BASE_DIR.
# E605: the switch file's directory is writable by every user, without the sticky bit.
# W601: MAINTENANCE_CACHE is a per-process cache (locmem, dummy): other processes never see it.
# W602: the MAINTENANCE_FILE directory does not exist (``maintenance on`` would fail).
# W603: a path prefix entry does not start with "/" (it never matches).
# W604: a path prefix entry is "" or "/" (it would match every path; it is ignored).
# W605: the switch file's directory is writable by every user, with the sticky bit (/tmp).
# W606: something that is not a regular file is at the switch path, or it cannot be read.
# W607: MAINTENANCE_FILE is a relative path (each process resolves it from its own directory).

_PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)
_UNAVAILABLE_MIDDLEWARE = "django_pg_resilience.middleware.DatabaseUnavailableMiddleware"
_FILE_HINT = "Set PG_RESILIENCE['MAINTENANCE_FILE'] to a path in a directory only the site's "
_FILE_HINT += "users can write (e.g. '/srv/shop/run/maintenance')."


@register()
def check_maintenance(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.core.exceptions import ImproperlyConfigured

    try:
        app = conf.app_settings()
    except ImproperlyConfigured:
        return []  # reported by E002
    where = _cache_messages(app) if app.MAINTENANCE_CACHE else _switch_file_messages()
    return [
        *_bypass_address_messages(app),
        *where,
        *_path_messages(app),
        *_retry_after_messages(app),
    ]


def _bypass_address_messages(app: conf.AppSettings) -> list[CheckMessage]:
    from django_pg_resilience import maintenance

    bad = maintenance.bad_bypass_ips(app.MAINTENANCE_BYPASS_IPS)
    if not bad:
        return []
    return [
        Error(
            f"PG_RESILIENCE['MAINTENANCE_BYPASS_IPS'] has entries that are not an IP "
            f"address or network: {', '.join(map(repr, bad))}.",
            hint="Write addresses or CIDR networks: '203.0.113.7', '10.0.0.0/8', '2001:db8::/32'.",
            id="pg_resilience.E601",
        )
    ]


def _cache_messages(app: conf.AppSettings) -> list[CheckMessage]:
    from django.conf import settings

    from django_pg_resilience import maintenance

    alias = app.MAINTENANCE_CACHE
    caches: dict[str, Any] = getattr(settings, "CACHES", {}) or {}
    backend = (caches.get(alias) or {}).get("BACKEND", "") if alias else ""
    shared_hint = "Use a Redis or Memcached cache, or None to keep the switch in a file."
    if alias not in caches:
        return [
            Error(
                f"PG_RESILIENCE['MAINTENANCE_CACHE'] is {alias!r}, which is not an alias of "
                "CACHES.",
                hint=f"Use one of {', '.join(map(repr, caches)) or 'no alias (add one)'}, "
                "or None to keep the switch in a file.",
                id="pg_resilience.E602",
            )
        ]
    if backend == maintenance.DATABASE_CACHE:
        return [
            Error(
                f"PG_RESILIENCE['MAINTENANCE_CACHE'] is {alias!r}, a database cache: the "
                "switch must be readable while the database is down.",
                hint=shared_hint,
                id="pg_resilience.E602",
            )
        ]
    if backend in _PER_PROCESS_CACHES:
        return [
            CheckWarning(
                f"PG_RESILIENCE['MAINTENANCE_CACHE'] is {alias!r} "
                f"({backend.rsplit('.', 1)[-1]}): every process has its own, so "
                "`manage.py maintenance on` reaches no server process.",
                hint=shared_hint,
                id="pg_resilience.W601",
            )
        ]
    return []


def _switch_file_messages() -> list[CheckMessage]:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from django_pg_resilience import maintenance

    try:
        path = maintenance.maintenance_file()
    except ImproperlyConfigured as exc:
        # Only the middleware reads the switch: without it, nothing is missing.
        if _UNAVAILABLE_MIDDLEWARE not in list(getattr(settings, "MIDDLEWARE", None) or []):
            return []
        return [Error(str(exc), hint=_FILE_HINT, id="pg_resilience.E604")]
    messages: list[CheckMessage] = []
    if not os.path.isabs(path):
        messages.append(
            CheckWarning(
                f"PG_RESILIENCE['MAINTENANCE_FILE'] is {path!r}, a relative path: each "
                "process looks for it from its own working directory, so `manage.py "
                "maintenance on` may write a file the server never reads.",
                hint="Use an absolute path, e.g. os.path.join(BASE_DIR, 'maintenance').",
                id="pg_resilience.W607",
            )
        )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        messages.append(
            CheckWarning(
                f"The directory of PG_RESILIENCE['MAINTENANCE_FILE'] ({directory}) does "
                "not exist: `manage.py maintenance on` cannot write the switch.",
                hint="Create the directory, or point MAINTENANCE_FILE at an existing one.",
                id="pg_resilience.W602",
            )
        )
        return messages
    return [*messages, *_shared_directory_messages(path), *_switch_path_messages(path)]


def _owner_if_foreign(path: str, directory_owner: int) -> int | None:
    """The uid owning ``path`` when that is another user than ours, root or the directory's."""
    try:
        owner = os.lstat(path).st_uid
    except OSError:
        return None
    return None if owner in (os.geteuid(), 0, directory_owner) else owner


def _shared_directory_messages(path: str) -> list[CheckMessage]:
    """Whether other local users can create, replace or remove the switch."""
    directory = os.path.dirname(os.path.abspath(path))
    info = os.stat(directory)
    if not info.st_mode & stat.S_IWOTH:
        return []
    if info.st_mode & stat.S_ISVTX:
        owner = _owner_if_foreign(path, info.st_uid)
        return [
            CheckWarning(
                f"The maintenance switch's directory {directory} is writable by every user "
                "(sticky, like /tmp): any local user can create the switch first, turning "
                "the site's maintenance on, and own it"
                + (f" (the one there now belongs to uid {owner})." if owner is not None else "."),
                hint=_FILE_HINT,
                id="pg_resilience.W605",
            )
        ]
    return [
        Error(
            f"The maintenance switch's directory {directory} is writable by every user: any "
            "local user can remove or replace the switch, turning maintenance off or on.",
            hint=_FILE_HINT + " Or remove the others' write permission: chmod o-w.",
            id="pg_resilience.E605",
        )
    ]


def _switch_path_messages(path: str) -> list[CheckMessage]:
    """What is at the switch path now, if it is not a regular file this process can read."""
    from django_pg_resilience import maintenance

    try:
        maintenance.FileSwitch(path).read()
    except maintenance.SwitchUnreadable as exc:
        return [
            CheckWarning(
                f"The maintenance switch {path} cannot be read ({exc.reason}): while it "
                "cannot, each process keeps what it last read"
                + (" (it is there, so maintenance is on)." if exc.present else "."),
                hint="Remove what is there (`manage.py maintenance on` writes a regular "
                "file), or make it readable to the site's users.",
                id="pg_resilience.W606",
            )
        ]
    return []


def _path_messages(app: conf.AppSettings) -> list[CheckMessage]:
    from django_pg_resilience import maintenance

    entries: list[tuple[str, str | None]] = [
        *(("MAINTENANCE_BYPASS_PATHS", path) for path in app.MAINTENANCE_BYPASS_PATHS),
        *(("MAINTENANCE_STAFF_WRITE_PATHS", path) for path in app.MAINTENANCE_STAFF_WRITE_PATHS),
        ("HEALTH_METRICS_PATH", app.HEALTH_METRICS_PATH),
    ]
    messages: list[CheckMessage] = []
    for key, path in entries:
        problem = maintenance.path_entry_problem(path)
        name = f"PG_RESILIENCE[{key!r}]"
        if problem == "everything":
            messages.append(
                CheckWarning(
                    f"{name} has {path!r}, which would match every path and keep the whole "
                    "site open during maintenance: it is ignored.",
                    hint="Write the path prefixes to serve, e.g. '/status'"
                    + (", or None for no metrics path." if key == "HEALTH_METRICS_PATH" else "."),
                    id="pg_resilience.W604",
                )
            )
        elif problem == "nothing":
            messages.append(
                CheckWarning(
                    f"{name} has {path!r}, which does not start with '/': request paths "
                    "always do, so it never matches.",
                    hint=f"Write '/{path}'.",
                    id="pg_resilience.W603",
                )
            )
    return messages


def _retry_after_messages(app: conf.AppSettings) -> list[CheckMessage]:
    if app.MAINTENANCE_RETRY_AFTER >= 1:
        return []
    return [
        Error(
            "PG_RESILIENCE['MAINTENANCE_RETRY_AFTER'] is 0: clients would retry at once.",
            hint="Use the number of seconds after which a retry makes sense (e.g. 30).",
            id="pg_resilience.E603",
        )
    ]
