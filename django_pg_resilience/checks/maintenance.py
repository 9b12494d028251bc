"""The planned maintenance switch's checks (E601-E603, W601-W603)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from django_pg_resilience import conf

# --- planned maintenance checks ---
# E601: MAINTENANCE_BYPASS_IPS has an entry that is not an address or a CIDR network.
# E602: MAINTENANCE_CACHE names no CACHES alias, or the database cache (needs the database).
# W601: MAINTENANCE_CACHE is a per-process cache (locmem, dummy): other processes never see it.
# W602: the MAINTENANCE_FILE directory does not exist (``maintenance on`` would fail).
# W603: a MAINTENANCE_BYPASS_PATHS entry does not start with "/" (it never matches).
# E603: MAINTENANCE_RETRY_AFTER is 0 (a client would retry at once, forever).

_PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@register()
def check_maintenance(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    import os

    from django.conf import settings
    from django.core.checks import Warning as CheckWarning
    from django.core.exceptions import ImproperlyConfigured

    from django_pg_resilience import maintenance

    try:
        app = conf.app_settings()
    except ImproperlyConfigured:
        return []  # reported by E002
    messages: list[CheckMessage] = []
    bad = maintenance.bad_bypass_ips(app.MAINTENANCE_BYPASS_IPS)
    if bad:
        messages.append(
            Error(
                f"PG_RESILIENCE['MAINTENANCE_BYPASS_IPS'] has entries that are not an IP "
                f"address or network: {', '.join(map(repr, bad))}.",
                hint="Write addresses or CIDR networks: '203.0.113.7', '10.0.0.0/8', "
                "'2001:db8::/32'.",
                id="pg_resilience.E601",
            )
        )
    if app.MAINTENANCE_CACHE:
        caches: dict[str, Any] = getattr(settings, "CACHES", {}) or {}
        backend = (caches.get(app.MAINTENANCE_CACHE) or {}).get("BACKEND", "")
        if app.MAINTENANCE_CACHE not in caches:
            messages.append(
                Error(
                    f"PG_RESILIENCE['MAINTENANCE_CACHE'] is {app.MAINTENANCE_CACHE!r}, which "
                    "is not an alias of CACHES.",
                    hint=f"Use one of {', '.join(map(repr, caches)) or 'no alias (add one)'}, "
                    "or None to keep the switch in a file.",
                    id="pg_resilience.E602",
                )
            )
        elif backend == maintenance.DATABASE_CACHE:
            messages.append(
                Error(
                    f"PG_RESILIENCE['MAINTENANCE_CACHE'] is {app.MAINTENANCE_CACHE!r}, a "
                    "database cache: the switch must be readable while the database is down.",
                    hint="Use a Redis or Memcached cache, or None to keep the switch in a file.",
                    id="pg_resilience.E602",
                )
            )
        elif backend in _PER_PROCESS_CACHES:
            messages.append(
                CheckWarning(
                    f"PG_RESILIENCE['MAINTENANCE_CACHE'] is {app.MAINTENANCE_CACHE!r} "
                    f"({backend.rsplit('.', 1)[-1]}): every process has its own, so "
                    "`manage.py maintenance on` reaches no server process.",
                    hint="Use a Redis or Memcached cache, or None to keep the switch in a file.",
                    id="pg_resilience.W601",
                )
            )
    else:
        directory = os.path.dirname(os.path.abspath(maintenance.maintenance_file()))
        if not os.path.isdir(directory):
            messages.append(
                CheckWarning(
                    f"The directory of PG_RESILIENCE['MAINTENANCE_FILE'] ({directory}) does "
                    "not exist: `manage.py maintenance on` cannot write the switch.",
                    hint="Create the directory, or point MAINTENANCE_FILE at an existing one.",
                    id="pg_resilience.W602",
                )
            )
    for path in app.MAINTENANCE_BYPASS_PATHS:
        if not path.startswith("/"):
            messages.append(
                CheckWarning(
                    f"PG_RESILIENCE['MAINTENANCE_BYPASS_PATHS'] has {path!r}, which does not "
                    "start with '/': request paths always do, so it never matches.",
                    hint=f"Write '/{path}'.",
                    id="pg_resilience.W603",
                )
            )
    if app.MAINTENANCE_RETRY_AFTER < 1:
        messages.append(
            Error(
                "PG_RESILIENCE['MAINTENANCE_RETRY_AFTER'] is 0: clients would retry at once.",
                hint="Use the number of seconds after which a retry makes sense (e.g. 30).",
                id="pg_resilience.E603",
            )
        )
    return messages
