"""System checks. Ids are stable: ``pg_resilience.E0xx`` errors, ``W0xx`` warnings.

| id | what |
|----|------|
| E002 | a setting of the package has a wrong name or type |

Each concern adds its checks below in its own section; every message says how
to fix the problem.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from django_pg_resilience import conf
from django_pg_resilience.backend import ENGINE


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    return [
        Error(message, hint="See the Settings section of the README.", id="pg_resilience.E002")
        for message in conf.settings_errors()
    ]


# --- backend checks ---
# W101: a stock postgresql alias without connect_timeout (psycopg waits 130 s).
# W102: connect_timeout 0 (wait forever) or 1 (libpq's minimum is 2).
# W103: CONN_MAX_AGE > 0 or None without CONN_HEALTH_CHECKS.
# E104: OPTIONS["pool"] with CONN_MAX_AGE other than 0 (Django refuses it at connect).
# W105: deadline of 5 s or more on an alias that serves web requests (Shopify's limit).

_OUR_ENGINE = ENGINE
_STOCK_ENGINES = ("django.db.backends.postgresql", "django.db.backends.postgresql_psycopg2")


@register()
def check_backend_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.conf import settings
    from django.core.checks import Warning
    from django.core.exceptions import ImproperlyConfigured

    messages: list[CheckMessage] = []
    databases: dict[str, dict[str, Any]] = settings.DATABASES
    for alias, entry in databases.items():
        engine = entry.get("ENGINE", "")
        options: dict[str, Any] = entry.get("OPTIONS") or {}
        where = f"DATABASES[{alias!r}]"
        if engine in _STOCK_ENGINES and "connect_timeout" not in options:
            messages.append(
                Warning(
                    f"{where} has no OPTIONS['connect_timeout']: psycopg waits up to 130 s "
                    "for an unreachable server, holding a worker the whole time.",
                    hint=f"Set ENGINE to {_OUR_ENGINE!r} (it sets safe timeouts and "
                    "reconnects), or set OPTIONS['connect_timeout'] to a few seconds.",
                    id="pg_resilience.W101",
                )
            )
        if engine != _OUR_ENGINE:
            continue
        try:
            backend = conf.backend_settings(alias, entry)
        except ImproperlyConfigured:
            continue  # reported by E002
        timeout = options.get("connect_timeout", backend.connect_timeout)
        if str(timeout).strip() in ("0", "1", "0.0", "1.0"):
            messages.append(
                Warning(
                    f"{where} sets connect_timeout to {timeout}: 0 waits forever and libpq "
                    "raises anything below 2 to 2.",
                    hint="Use a connect_timeout of 2 to 5 seconds.",
                    id="pg_resilience.W102",
                )
            )
        max_age = entry.get("CONN_MAX_AGE", 0)
        if (max_age is None or max_age > 0) and not entry.get("CONN_HEALTH_CHECKS", False):
            messages.append(
                Warning(
                    f"{where} keeps connections (CONN_MAX_AGE={max_age}) without "
                    "CONN_HEALTH_CHECKS: a connection that died between requests is only "
                    "found when a query fails on it.",
                    hint=f"Set {where}['CONN_HEALTH_CHECKS'] = True.",
                    id="pg_resilience.W103",
                )
            )
        if options.get("pool") and max_age != 0:
            messages.append(
                Error(
                    f"{where} uses OPTIONS['pool'] with CONN_MAX_AGE={max_age}; Django "
                    "refuses persistent connections with a pool.",
                    hint=f"Set {where}['CONN_MAX_AGE'] = 0 (the pool keeps the connections).",
                    id="pg_resilience.E104",
                )
            )
        if backend.deadline >= 5.0 and getattr(settings, "ROOT_URLCONF", None):
            messages.append(
                Warning(
                    f"{where} waits up to deadline={backend.deadline:g} s for an outage; "
                    "a web request (or a Shopify webhook, 5 s) may time out first.",
                    hint="Keep deadline below 5 s for web aliases; give workers their "
                    "own alias with a longer deadline.",
                    id="pg_resilience.W105",
                )
            )
    return messages


# --- middleware checks ---
# W201: DatabaseUnavailableMiddleware is not first in MIDDLEWARE.
# W202: the 503 page's template cannot be loaded (a built-in page is sent instead).

_UNAVAILABLE_MIDDLEWARE = "django_pg_resilience.middleware.DatabaseUnavailableMiddleware"
# Middleware that never reads the database may come first (security headers,
# static files, CORS, compression): nothing they do can raise an outage error.
_DATABASE_FREE_MIDDLEWARE = frozenset(
    {
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.gzip.GZipMiddleware",
        "django.middleware.http.ConditionalGetMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "corsheaders.middleware.CorsMiddleware",
    }
)


@register()
def check_unavailable_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.conf import settings
    from django.core.checks import Warning
    from django.template import TemplateDoesNotExist, TemplateSyntaxError
    from django.template.loader import get_template

    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if _UNAVAILABLE_MIDDLEWARE not in middleware:
        return []
    messages: list[CheckMessage] = []
    before = [
        path
        for path in middleware[: middleware.index(_UNAVAILABLE_MIDDLEWARE)]
        if path not in _DATABASE_FREE_MIDDLEWARE
    ]
    if before:
        messages.append(
            Warning(
                f"{_UNAVAILABLE_MIDDLEWARE} comes after {', '.join(before)} in MIDDLEWARE, "
                "so a database outage raised there becomes a 500, not the 503 page.",
                hint=f"Move {_UNAVAILABLE_MIDDLEWARE} to the top of MIDDLEWARE.",
                id="pg_resilience.W201",
            )
        )
    from django_pg_resilience.unavailable import TEMPLATE_NAME

    try:
        get_template(TEMPLATE_NAME)
    except (TemplateDoesNotExist, TemplateSyntaxError) as exc:
        messages.append(
            Warning(
                f"The 503 page's template {TEMPLATE_NAME} cannot be "
                f"loaded ({type(exc).__name__}); a plain built-in page is sent instead.",
                hint="Add 'django_pg_resilience' to INSTALLED_APPS with APP_DIRS=True in "
                f"TEMPLATES, or provide your own {TEMPLATE_NAME}.",
                id="pg_resilience.W202",
            )
        )
    return messages


# --- webhook checks ---
# E301 no secret, E302 no handle(), E303 bad Standard Webhooks secret, E304 no verifier,
# E305 unknown durable_ack_standby alias, W301 WEBHOOK_MAX_BODY_SIZE above Django's own limit.
# The rules live in django_pg_resilience/webhooks/checks.py.


@register("urls")
def check_webhook_views(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django_pg_resilience.webhooks.checks import webhook_check_messages

    return webhook_check_messages()


# --- health checks ---
# E401: a PG_RESILIENCE["NODES"] entry (or an alias's HOST/PORT pair) cannot be probed.
# E402: PG_RESILIENCE["DIGITALOCEAN_API_URL"] is not https (or http to a loopback address).
# E403: PG_RESILIENCE["READINESS_ENFORCE"] names a check that does not exist.
# W401: a HEALTH_* warning threshold is not below its critical one, or a ratio is above 1.
# W402: HEALTH_TOKEN is too short to keep readyz's details private.


@register()
def check_health(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.core.checks import Warning as CheckWarning
    from django.core.exceptions import ImproperlyConfigured

    from django_pg_resilience.health.digitalocean import DigitalOceanError, check_api_url
    from django_pg_resilience.health.readiness import ENFORCEABLE_CHECKS, unknown_enforced_names
    from django_pg_resilience.health.targets import discover_targets

    try:
        app = conf.app_settings()
    except ImproperlyConfigured:
        return []  # reported by E002
    messages: list[CheckMessage] = []
    try:
        discover_targets()
    except ImproperlyConfigured as exc:
        messages.append(
            Error(
                str(exc),
                hint="NODES entries are {name: 'host=... port=... dbname=... user=...'} "
                "or {name: {'HOST': ..., 'PORT': ..., 'ROLE': 'primary'|'standby'}}.",
                id="pg_resilience.E401",
            )
        )
    try:
        check_api_url(app.DIGITALOCEAN_API_URL)
    except DigitalOceanError as exc:
        messages.append(
            Error(
                str(exc),
                hint="Use https://api.digitalocean.com (the default): the token must not "
                "travel in clear text.",
                id="pg_resilience.E402",
            )
        )
    unknown = unknown_enforced_names(app.READINESS_ENFORCE)
    if unknown:
        messages.append(
            Error(
                f"PG_RESILIENCE['READINESS_ENFORCE'] names unknown checks: {', '.join(unknown)}.",
                hint=f"Known: {', '.join(sorted(ENFORCEABLE_CHECKS))}.",
                id="pg_resilience.E403",
            )
        )
    pairs = (
        ("HEALTH_LAG_WARNING", "HEALTH_LAG_CRITICAL"),
        ("HEALTH_CONNECTIONS_WARNING", "HEALTH_CONNECTIONS_CRITICAL"),
    )
    for low, high in pairs:
        if getattr(app, low) >= getattr(app, high):
            messages.append(
                CheckWarning(
                    f"PG_RESILIENCE['{low}'] ({getattr(app, low)}) is not below "
                    f"PG_RESILIENCE['{high}'] ({getattr(app, high)}): the warning never shows.",
                    hint=f"Set {low} lower than {high}.",
                    id="pg_resilience.W401",
                )
            )
    for name in ("HEALTH_CONNECTIONS_WARNING", "HEALTH_CONNECTIONS_CRITICAL"):
        if getattr(app, name) > 1:
            messages.append(
                CheckWarning(
                    f"PG_RESILIENCE['{name}'] is {getattr(app, name)}; it is a ratio.",
                    hint="Write 0.8 for 80 %.",
                    id="pg_resilience.W401",
                )
            )
    if app.HEALTH_TOKEN is not None and len(app.HEALTH_TOKEN) < 16:
        messages.append(
            CheckWarning(
                "PG_RESILIENCE['HEALTH_TOKEN'] is shorter than 16 characters.",
                hint="Use a long random value, e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'.",
                id="pg_resilience.W402",
            )
        )
    return messages


# --- metrics ---
# Not a check: this module is imported when the app starts (AppConfig.ready), and
# the cluster gauges and counters must be on /metrics before the first scrape.
def _install_metrics() -> None:
    from django_pg_resilience.health import metrics

    metrics.install()


_install_metrics()
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
                hint="See the Read replicas section of the README.",
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


# --- provider node metrics and PgBouncer ---
@register()
def check_node_metrics_and_pgbouncers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from pathlib import Path

    from django.core.checks import Warning as CheckWarning
    from django.core.exceptions import ImproperlyConfigured

    from django_pg_resilience.health.pgbouncer import pgbouncer_params

    try:
        app = conf.app_settings()
    except ImproperlyConfigured:
        return []  # reported by E002
    messages: list[CheckMessage] = []
    for name, dsn in app.PGBOUNCERS.items():
        try:
            pgbouncer_params(str(name), dsn)
        except ImproperlyConfigured as exc:
            messages.append(
                Error(
                    str(exc),
                    hint="PGBOUNCERS is {name: 'host=... port=6432 user=...'}; the user "
                    "must be in PgBouncer's admin_users or stats_users.",
                    id="pg_resilience.E404",
                )
            )
    ca_file = app.DIGITALOCEAN_METRICS_CA
    if ca_file is not None and not Path(ca_file).is_file():
        messages.append(
            Error(
                f"PG_RESILIENCE['DIGITALOCEAN_METRICS_CA'] is {ca_file!r}, which is not a file.",
                hint="Name the PEM file of the CA that signed the metrics endpoints' "
                "certificate, or None to use the system's CAs.",
                id="pg_resilience.E405",
            )
        )
    for resource in ("CPU", "MEMORY", "DISK"):
        low, high = f"HEALTH_NODE_{resource}_WARNING", f"HEALTH_NODE_{resource}_CRITICAL"
        if not getattr(app, low) < getattr(app, high) <= 1:
            messages.append(
                CheckWarning(
                    f"PG_RESILIENCE['{low}'] ({getattr(app, low)}) and ['{high}'] "
                    f"({getattr(app, high)}) must be ratios with the warning below the "
                    "critical level.",
                    hint="Write 0.8 for 80 %, e.g. 0.80 and 0.95.",
                    id="pg_resilience.W403",
                )
            )
    return messages


# --- libpq checks ---
# W106: the libpq psycopg uses is older than a connection option the alias sets (libpq
#       refuses an option it does not know, so every connection would fail).

#: Connection options and the first libpq (``psycopg.pq.version()`` form) that knows them.
LIBPQ_OPTION_MINIMUMS: dict[str, int] = {
    "tcp_user_timeout": 120000,
    "load_balance_hosts": 160000,
    "require_auth": 160000,
    "sslcertmode": 160000,
    "sslnegotiation": 170000,
}
#: target_session_attrs values beyond read-write/any arrived in libpq 14.
_SESSION_ATTRS_14 = frozenset({"read-only", "primary", "standby", "prefer-standby"})


def _libpq_label(version: int) -> str:
    return f"{version // 10000}.{version % 10000}"


def libpq_too_old(options: dict[str, Any], libpq: int) -> list[tuple[str, int]]:
    """The connection options ``libpq`` (e.g. 110000) does not know, with the version needed."""
    too_old = [
        (name, needed)
        for name, needed in LIBPQ_OPTION_MINIMUMS.items()
        if name in options and libpq < needed
    ]
    if str(options.get("target_session_attrs", "")) in _SESSION_ATTRS_14 and libpq < 140000:
        too_old.append(("target_session_attrs", 140000))
    return too_old


@register()
def check_libpq_version(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.conf import settings
    from django.core.checks import Warning

    try:
        import psycopg
    except ImportError:
        return []
    libpq = psycopg.pq.version()
    messages: list[CheckMessage] = []
    databases: dict[str, dict[str, Any]] = settings.DATABASES
    for alias, entry in databases.items():
        if not str(entry.get("ENGINE", "")).startswith(_OUR_ENGINE):
            continue
        # The backend adds tcp_user_timeout itself unless OPTIONS sets it.
        options = {"tcp_user_timeout": None, **(entry.get("OPTIONS") or {})}
        for name, needed in libpq_too_old(options, libpq):
            messages.append(
                Warning(
                    f"DATABASES[{alias!r}] uses the connection option {name!r}, which needs "
                    f"libpq {_libpq_label(needed)}+, but psycopg runs on libpq "
                    f"{_libpq_label(libpq)}: libpq refuses options it does not know, so "
                    "connections fail.",
                    hint="Install psycopg's binary build (pip install "
                    "'django-pg-resilience[binary]', which bundles a recent libpq) or a newer "
                    "libpq (libpq5 from apt.postgresql.org).",
                    id="pg_resilience.W106",
                )
            )
    return messages


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
