"""The replica router's checks (E501, W501-W504)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from django_pg_resilience import conf

# --- replica router checks ---
# E501: the router's settings name an alias that is not in DATABASES, or a bad READ_YOUR_WRITES.
# W501: ReplicaRouter is installed but no alias is a replica (read_write: False).
# W502: a replica alias waits long for an outage before the router can fall back.
# W503: ReplicaRouter without ReplicaRouterMiddleware (no read-your-writes across requests).
# W504: ReplicaRouterMiddleware on the wrong side of SessionMiddleware for READ_YOUR_WRITES.

_REPLICA_ROUTER = "django_pg_resilience.routers.ReplicaRouter"
_REPLICA_MIDDLEWARE = "django_pg_resilience.routers.ReplicaRouterMiddleware"
_SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
#: A replica's deadline above this keeps a request waiting before it falls back.
_REPLICA_DEADLINE_LIMIT = 1.0


@register()
def check_replica_router(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.conf import settings
    from django.core.checks import Warning as CheckWarning
    from django.core.exceptions import ImproperlyConfigured

    from django_pg_resilience.routers.config import router_config, router_config_errors

    if _REPLICA_ROUTER not in list(getattr(settings, "DATABASE_ROUTERS", None) or []):
        return []
    try:
        errors = router_config_errors()
        config = router_config() if not errors else None
    except ImproperlyConfigured:
        return []  # reported by E002
    if errors or config is None:
        return [
            Error(
                message,
                hint="See docs/replicas.md.",
                id="pg_resilience.E501",
            )
            for message in errors
        ]
    messages: list[CheckMessage] = []
    if not config.replicas:
        messages.append(
            CheckWarning(
                f"{_REPLICA_ROUTER} is in DATABASE_ROUTERS but no alias is a replica: every "
                "read goes to the primary.",
                hint="Add an alias for the read-only endpoint with "
                "OPTIONS['resilience'] = {'read_write': False}, or list it in "
                "PG_RESILIENCE['REPLICA_ALIASES'].",
                id="pg_resilience.W501",
            )
        )
    for alias in config.replicas:
        backend = conf.backend_settings(alias)
        if backend.deadline > _REPLICA_DEADLINE_LIMIT:
            messages.append(
                CheckWarning(
                    f"DATABASES[{alias!r}] is a replica with deadline={backend.deadline:g} s: "
                    "a request whose replica dies waits that long before its reads move to "
                    "the primary.",
                    hint=f"Set DATABASES[{alias!r}]['OPTIONS']['resilience']['deadline'] to "
                    "0.5 or less (and 'max_attempts' to 1 or 2): the primary is there.",
                    id="pg_resilience.W502",
                )
            )
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if _REPLICA_MIDDLEWARE in middleware and _SESSION_MIDDLEWARE in middleware:
        after_sessions = middleware.index(_REPLICA_MIDDLEWARE) > middleware.index(
            _SESSION_MIDDLEWARE
        )
        if after_sessions != (config.read_your_writes == "session"):
            where = "after" if config.read_your_writes == "session" else "before"
            why = (
                "it keeps the position in the session"
                if config.read_your_writes == "session"
                else "a session saved at the end of a request must be covered by the "
                "position, or the client's next request may miss it on a replica"
            )
            messages.append(
                CheckWarning(
                    f"With READ_YOUR_WRITES={config.read_your_writes!r}, "
                    f"{_REPLICA_MIDDLEWARE} must come {where} {_SESSION_MIDDLEWARE}: {why}.",
                    hint=f"Move {_REPLICA_MIDDLEWARE!r} {where} {_SESSION_MIDDLEWARE!r}.",
                    id="pg_resilience.W504",
                )
            )
    if getattr(settings, "ROOT_URLCONF", None) and _REPLICA_MIDDLEWARE not in middleware:
        messages.append(
            CheckWarning(
                f"{_REPLICA_ROUTER} is installed without {_REPLICA_MIDDLEWARE}: a client's "
                "next request may read from a replica that lacks what it just wrote, and a "
                "replica that dies under a request is a 503.",
                hint=f"Add {_REPLICA_MIDDLEWARE!r} to MIDDLEWARE, before SessionMiddleware "
                "(after it with READ_YOUR_WRITES='session').",
                id="pg_resilience.W503",
            )
        )
    return messages
