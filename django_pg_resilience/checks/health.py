"""Cluster health, provider node metrics and PgBouncer checks (E401-E406, W401-W406)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from django_pg_resilience import conf

# --- health checks ---
# E401: a PG_RESILIENCE["NODES"] entry (or an alias's HOST/PORT pair) cannot be probed.
# E402: PG_RESILIENCE["DIGITALOCEAN_API_URL"] is not https (or http to a loopback address).
# E403: PG_RESILIENCE["READINESS_ENFORCE"] names a check that does not exist.
# W401: a HEALTH_* warning threshold is not below its critical one, or a ratio is above 1.
# W402: HEALTH_TOKEN is too short to keep readyz's details private.
# --- health endpoints (check_health_endpoints) ---
# E406: HEALTH_METRICS_NAMES is not "token", "always" or "never".
# W404: HEALTH_CACHE_SECONDS is below the one-second floor between two rounds.
# W405: HEALTH_MAX_REPORT_AGE is shorter than a round can take to replace the report.
# W406: DIGITALOCEAN_CACHE_SECONDS spends a large share of the API token's hourly quota.


@register()
def check_health(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.core.checks import Warning as CheckWarning
    from django.core.exceptions import ImproperlyConfigured

    from django_pg_resilience.health.digitalocean import DigitalOceanError, check_api_url
    from django_pg_resilience.health.readiness import enforceable_checks, unknown_enforced_names
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
                hint=f"Known: {', '.join(sorted(enforceable_checks()))}.",
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


# --- health endpoints ---
#: One process at this DIGITALOCEAN_CACHE_SECONDS asks for 4 x 3600 / 30 = 480
#: requests an hour, about a tenth of the token's 5,000: a few processes fill it.
_DIGITALOCEAN_CACHE_FLOOR = 30.0


@register()
def check_health_endpoints(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.core.exceptions import ImproperlyConfigured

    try:
        app = conf.app_settings()
    except ImproperlyConfigured:
        return []  # reported by E002
    return [
        *_metrics_names(app),
        *_cache_floor(app),
        *_report_age(app),
        *_digitalocean_quota(app),
    ]


def _metrics_names(app: conf.AppSettings) -> list[CheckMessage]:
    from django_pg_resilience.health.access import METRICS_NAMES_MODES

    if app.HEALTH_METRICS_NAMES in METRICS_NAMES_MODES:
        return []
    return [
        Error(
            f"PG_RESILIENCE['HEALTH_METRICS_NAMES'] is {app.HEALTH_METRICS_NAMES!r}; /metrics "
            "shows pseudonyms to everyone until it is one of "
            f"{', '.join(map(repr, METRICS_NAMES_MODES))}.",
            hint="'token' (default): names only for a scrape with HEALTH_TOKEN; 'always': "
            "/metrics is reachable by the operator only; 'never'.",
            id="pg_resilience.E406",
        )
    ]


def _cache_floor(app: conf.AppSettings) -> list[CheckMessage]:
    from django.core.checks import Warning as CheckWarning

    from django_pg_resilience.health.cache import MIN_ROUND_INTERVAL

    if app.HEALTH_CACHE_SECONDS >= MIN_ROUND_INTERVAL:
        return []
    return [
        CheckWarning(
            f"PG_RESILIENCE['HEALTH_CACHE_SECONDS'] is {app.HEALTH_CACHE_SECONDS:g}: the "
            f"health endpoints still run at most one round per {MIN_ROUND_INTERVAL:g} s.",
            hint=f"Set it to {MIN_ROUND_INTERVAL:g} or more (default 5).",
            id="pg_resilience.W404",
        )
    ]


def _report_age(app: conf.AppSettings) -> list[CheckMessage]:
    from django.core.checks import Warning as CheckWarning
    from django.core.exceptions import ImproperlyConfigured

    from django_pg_resilience.health.cache import MIN_ROUND_INTERVAL
    from django_pg_resilience.health.evaluate import Thresholds
    from django_pg_resilience.health.providers import RoundContext
    from django_pg_resilience.health.report import round_budget

    context = RoundContext(app, Thresholds.from_settings(app), app.HEALTH_TIMEOUT, fresh=False)
    try:
        longest = max(app.HEALTH_CACHE_SECONDS, MIN_ROUND_INTERVAL) + round_budget(context)
    except ImproperlyConfigured:
        return []  # a provider's setting, reported by its own check
    if longest < app.HEALTH_MAX_REPORT_AGE:
        return []
    return [
        CheckWarning(
            f"PG_RESILIENCE['HEALTH_MAX_REPORT_AGE'] ({app.HEALTH_MAX_REPORT_AGE:g} s) is not "
            f"above HEALTH_CACHE_SECONDS plus the longest round ({longest:g} s): a report "
            "expires before the next one can replace it, and the endpoints say UNKNOWN.",
            hint=f"Set it to {2 * longest:g} or more (default 30).",
            id="pg_resilience.W405",
        )
    ]


def _digitalocean_quota(app: conf.AppSettings) -> list[CheckMessage]:
    from django.core.checks import Warning as CheckWarning

    if not app.DIGITALOCEAN_CLUSTER or app.DIGITALOCEAN_CACHE_SECONDS >= _DIGITALOCEAN_CACHE_FLOOR:
        return []
    per_hour = 4 * 3600 / max(app.DIGITALOCEAN_CACHE_SECONDS, 1.0)
    return [
        CheckWarning(
            f"PG_RESILIENCE['DIGITALOCEAN_CACHE_SECONDS'] is {app.DIGITALOCEAN_CACHE_SECONDS:g}: "
            f"each process may send up to {per_hour:.0f} requests an hour to the DigitalOcean "
            "API, whose token allows 5,000 an hour for everything that uses it.",
            hint=f"Set it to {_DIGITALOCEAN_CACHE_FLOOR:g} or more (default 60).",
            id="pg_resilience.W406",
        )
    ]
