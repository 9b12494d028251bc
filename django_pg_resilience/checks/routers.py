"""The replica router's checks (E501, W501-W505)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register
from django.core.checks import Warning as CheckWarning

from django_pg_resilience import conf

# --- replica router checks ---
# E501: the router's settings name an alias that is not in DATABASES, or a bad READ_YOUR_WRITES.
# W501: ReplicaRouter is installed but no alias is a replica (read_write: False).
# W502: a replica alias waits long for an outage before the router can fall back.
# W503: ReplicaRouter without ReplicaRouterMiddleware (no read-your-writes across requests).
# W504: ReplicaRouterMiddleware on the wrong side of SessionMiddleware for READ_YOUR_WRITES.
# W505: the read-your-writes cookie may travel over plain http (not Secure) outside DEBUG.

_REPLICA_ROUTER = "django_pg_resilience.routers.ReplicaRouter"
_REPLICA_MIDDLEWARE = "django_pg_resilience.routers.ReplicaRouterMiddleware"
_SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
#: A replica's deadline above this keeps a request waiting before it falls back.
_REPLICA_DEADLINE_LIMIT = 1.0


@register()
def check_replica_router(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.conf import settings
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
            Error(message, hint="See docs/replicas.md.", id="pg_resilience.E501")
            for message in errors
        ]
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    return [
        *_no_replica(config),
        *_slow_replicas(config),
        *_middleware_order(config, middleware),
        *_missing_middleware(settings, middleware),
        *_cookie_not_secure(settings, config),
    ]


def _no_replica(config: Any) -> list[CheckMessage]:
    if config.replicas:
        return []
    return [
        CheckWarning(
            f"{_REPLICA_ROUTER} is in DATABASE_ROUTERS but no alias is a replica: every "
            "read goes to the primary.",
            hint="Add an alias for the read-only endpoint with "
            "OPTIONS['resilience'] = {'read_write': False}, or list it in "
            "PG_RESILIENCE['REPLICA_ALIASES'].",
            id="pg_resilience.W501",
        )
    ]


def _slow_replicas(config: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
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
    return messages


def _middleware_order(config: Any, middleware: list[str]) -> list[CheckMessage]:
    if _REPLICA_MIDDLEWARE not in middleware or _SESSION_MIDDLEWARE not in middleware:
        return []
    in_session = config.read_your_writes == "session"
    after_sessions = middleware.index(_REPLICA_MIDDLEWARE) > middleware.index(_SESSION_MIDDLEWARE)
    if after_sessions == in_session:
        return []
    where = "after" if in_session else "before"
    why = (
        "it keeps the position in the session"
        if in_session
        else "a session saved at the end of a request must be covered by the "
        "position, or the client's next request may miss it on a replica"
    )
    return [
        CheckWarning(
            f"With READ_YOUR_WRITES={config.read_your_writes!r}, "
            f"{_REPLICA_MIDDLEWARE} must come {where} {_SESSION_MIDDLEWARE}: {why}.",
            hint=f"Move {_REPLICA_MIDDLEWARE!r} {where} {_SESSION_MIDDLEWARE!r}.",
            id="pg_resilience.W504",
        )
    ]


def _missing_middleware(settings: Any, middleware: list[str]) -> list[CheckMessage]:
    if not getattr(settings, "ROOT_URLCONF", None) or _REPLICA_MIDDLEWARE in middleware:
        return []
    return [
        CheckWarning(
            f"{_REPLICA_ROUTER} is installed without {_REPLICA_MIDDLEWARE}: a client's "
            "next request may read from a replica that lacks what it just wrote, and a "
            "replica that dies under a request is a 503.",
            hint=f"Add {_REPLICA_MIDDLEWARE!r} to MIDDLEWARE, before SessionMiddleware "
            "(after it with READ_YOUR_WRITES='session').",
            id="pg_resilience.W503",
        )
    ]


def _cookie_not_secure(settings: Any, config: Any) -> list[CheckMessage]:
    if config.read_your_writes != "cookie" or getattr(settings, "DEBUG", False):
        return []
    site_secure = getattr(settings, "SESSION_COOKIE_SECURE", False) or getattr(
        settings, "CSRF_COOKIE_SECURE", False
    )
    if config.cookie_secure or (config.cookie_secure is None and site_secure):
        return []
    return [
        CheckWarning(
            "The read-your-writes cookie is marked Secure only on requests Django sees as "
            "https: behind a proxy that terminates TLS (without SECURE_PROXY_SSL_HEADER) it "
            "goes over plain http too.",
            hint="Set SESSION_COOKIE_SECURE = True (the site's cookies follow it), or "
            "PG_RESILIENCE['READ_YOUR_WRITES_COOKIE_SECURE'] = True.",
            id="pg_resilience.W505",
        )
    ]
