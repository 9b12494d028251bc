"""The backend's checks (W101-W106, E104): timeouts, persistent connections, pools, libpq."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from django_pg_resilience import conf
from django_pg_resilience.backend import ENGINE

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
