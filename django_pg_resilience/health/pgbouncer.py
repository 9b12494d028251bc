"""PgBouncer in front of the database: waiting clients and the settings that stretch a failover.

Reads PgBouncer's admin console (the ``pgbouncer`` database: ``SHOW CONFIG``,
``SHOW POOLS``, ``SHOW SERVERS``) of every entry of
``PG_RESILIENCE["PGBOUNCERS"]`` (``{name: DSN}``) and of ``manage.py health
--pgbouncer DSN``. The user needs to be in PgBouncer's ``admin_users`` or
``stats_users``. The DSN's password never appears in a report.

Each probe is bounded: the connect by ``connect_timeout`` (the round's, or the
DSN's when smaller), every command's round trip by the round's timeout (the
admin console has no ``statement_timeout``; a PgBouncer that stops answering
mid-session would otherwise hold the probe's thread until TCP gives up).

Behind PgBouncer, the app's own reconnects reach PgBouncer, not the database:
how soon the site answers after a failover is PgBouncer's business, and its
defaults are slow (a 15 s pause after each failed server login).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from psycopg.conninfo import conninfo_to_dict

from django_pg_resilience.backend.connection import ResilientConnection
from django_pg_resilience.health.evaluate import Check, _graded
from django_pg_resilience.health.status import Status
from django_pg_resilience.health.targets import MASK, masked_dsn

__all__ = [
    "ADMIN_DATABASE",
    "FAILOVER_LIMITS",
    "RECOMMENDED",
    "check_pgbouncers",
    "pgbouncer_params",
    "probe_pgbouncer",
]

ADMIN_DATABASE = "pgbouncer"

#: Settings (seconds) that bound a failover behind PgBouncer, with what we recommend.
RECOMMENDED: dict[str, float] = {
    "server_login_retry": 1,
    "server_connect_timeout": 3,
    "query_wait_timeout": 10,
    "server_check_delay": 10,
    "dns_max_ttl": 5,
}
#: Above these values a setting stretches a failover: WARNING, with the reason.
FAILOVER_LIMITS: dict[str, tuple[float, str]] = {
    "server_login_retry": (
        2,
        "after a failed server login PgBouncer waits this long before it tries again, "
        "so the site stays down this much longer after the endpoint moved",
    ),
    "server_connect_timeout": (
        5,
        "a connect to an endpoint that drops packets hangs this long before the next try",
    ),
    "query_wait_timeout": (
        30,
        "a client waits up to this long for a server connection during the outage "
        "(0: forever) instead of failing fast to the app's calm 503",
    ),
    "server_check_delay": (
        30,
        "an idle server connection is reused unchecked for this long, so a dead one "
        "fails the next transaction",
    ),
    "dns_max_ttl": (
        15,
        "a host name's address is cached this long, so a moved DNS name is followed late",
    ),
}
_CONFIG_SHOWN = (*RECOMMENDED, "pool_mode", "max_client_conn", "default_pool_size")


def pgbouncer_params(name: str, dsn: str) -> dict[str, Any]:
    """libpq parameters of the admin console for ``dsn`` (its dbname forced to ``pgbouncer``)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ImproperlyConfigured(
            f"PG_RESILIENCE['PGBOUNCERS'][{name!r}] is not a valid libpq connection string "
            f"({exc.__class__.__name__}). Use 'host=... port=6432 user=...'."
        ) from None
    return {**params, "dbname": ADMIN_DATABASE}


def _bounded(params: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """``params`` with a connect timeout no longer than the round's (libpq's least is 2 s)."""
    ours = max(2, round(timeout))
    given = _number(params.get("connect_timeout"))
    connect_timeout = ours if given is None or given <= 0 else min(ours, max(2, int(given)))
    return {**params, "connect_timeout": connect_timeout}


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rows(conn: psycopg.Connection[Any], command: str) -> list[dict[str, Any]]:
    cursor = conn.cursor()
    cursor.execute(command, prepare=False)
    names = [column.name for column in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def probe_pgbouncer(name: str, params: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """What one PgBouncer's admin console says, as a JSON-ready dict (``error`` if unreachable)."""
    facts: dict[str, Any] = {"name": name, "dsn": masked_dsn(params), "error": None}
    started = time.monotonic()
    try:
        with ResilientConnection.connect(**_bounded(params, timeout), autocommit=True) as conn:
            conn.io_timeout = timeout
            config = {str(row["key"]): row["value"] for row in _rows(conn, "SHOW CONFIG")}
            pools = _rows(conn, "SHOW POOLS")
            servers = _rows(conn, "SHOW SERVERS")
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        secret = params.get("password")
        if secret:
            message = message.replace(str(secret), MASK)
        facts["error"] = f"{exc.__class__.__name__}: {message}"
        return facts
    facts["connect_seconds"] = round(time.monotonic() - started, 4)
    facts["config"] = {key: config.get(key) for key in _CONFIG_SHOWN if key in config}
    facts["pools"] = [
        {
            "database": pool.get("database"),
            "user": pool.get("user"),
            "pool_mode": pool.get("pool_mode"),
            "clients_active": pool.get("cl_active"),
            "clients_waiting": pool.get("cl_waiting"),
            "servers_active": pool.get("sv_active"),
            "servers_idle": pool.get("sv_idle"),
            "servers_login": pool.get("sv_login"),
            "max_wait_seconds": (_number(pool.get("maxwait")) or 0.0)
            + (_number(pool.get("maxwait_us")) or 0.0) / 1e6,
        }
        for pool in pools
        if pool.get("database") != ADMIN_DATABASE
    ]
    facts["clients_waiting"] = sum(int(p["clients_waiting"] or 0) for p in facts["pools"])
    facts["max_wait_seconds"] = max((p["max_wait_seconds"] for p in facts["pools"]), default=0.0)
    by_state: dict[str, int] = {}
    for server in servers:
        state = str(server.get("state"))
        by_state[state] = by_state.get(state, 0) + 1
    facts["servers"] = by_state
    return facts


def _settings_check(facts: Mapping[str, Any]) -> Check:
    name = facts["name"]
    config = facts.get("config") or {}
    stretching = []
    for key, (limit, why) in FAILOVER_LIMITS.items():
        value = _number(config.get(key))
        unlimited = key == "query_wait_timeout" and value == 0
        if value is not None and (value > limit or unlimited):
            stretching.append((key, value, why))
    if not stretching:
        message = f"PgBouncer {name}: failover settings fine"
        return Check("pgbouncer_settings", Status.OK, message, subject=name)
    listed = ", ".join(f"{key} = {value:g}" for key, value, _ in stretching)
    advice = "; ".join(f"{key}: {why}" for key, _, why in stretching)
    recommended = ", ".join(f"{key} = {RECOMMENDED[key]:g}" for key, _, _ in stretching)
    return Check(
        "pgbouncer_settings",
        Status.WARNING,
        f"PgBouncer {name}: {listed} stretch a failover",
        value={key: value for key, value, _ in stretching},
        subject=name,
        hint=f"Set {recommended} in pgbouncer.ini and reload ({advice}).",
    )


def evaluate_pgbouncer(
    facts: Mapping[str, Any], wait_warning: float, wait_critical: float
) -> list[Check]:
    """The checks of one PgBouncer's facts."""
    name = facts["name"]
    if facts.get("error"):
        return [
            Check(
                "pgbouncer_reachable",
                Status.CRITICAL,
                f"PgBouncer {name}: admin console unreachable ({facts['error']})",
                value=False,
                subject=name,
                hint="Check that PgBouncer runs and that the DSN's user is in admin_users "
                "or stats_users.",
            )
        ]
    waiting, max_wait = facts["clients_waiting"], facts["max_wait_seconds"]
    status = _graded(max_wait, wait_warning, wait_critical)
    wait_check = Check(
        "pgbouncer_waiting",
        status,
        f"PgBouncer {name}: {waiting} client{'s' if waiting != 1 else ''} waiting, "
        f"longest {max_wait:.1f} s",
        value=waiting,
        unit="s",
        warning=wait_warning,
        critical=wait_critical,
        subject=name,
        hint=None
        if status is Status.OK
        else "Clients wait for a server connection: the database is down or the pool "
        "(default_pool_size) is too small for the traffic.",
    )
    return [wait_check, _settings_check(facts)]


def check_pgbouncers(
    entries: Mapping[str, Mapping[str, Any]],
    *,
    timeout: float,
    wait_warning: float,
    wait_critical: float,
) -> tuple[list[dict[str, Any]], list[Check]]:
    """Probe every PgBouncer in parallel; at most about ``timeout`` seconds in all."""
    found: dict[str, dict[str, Any]] = {}

    def probe(name: str, params: Mapping[str, Any]) -> None:
        found[name] = probe_pgbouncer(name, params, timeout)

    threads = [
        threading.Thread(target=probe, args=item, name="health-pgbouncer", daemon=True)
        for item in entries.items()
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout + 1
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    all_facts = [
        found.get(name)
        or {
            "name": name,
            "dsn": masked_dsn(params),
            "error": f"no answer within {timeout:g} s",
        }
        for name, params in entries.items()
    ]
    checks = [
        check
        for facts in all_facts
        for check in evaluate_pgbouncer(facts, wait_warning, wait_critical)
    ]
    return all_facts, checks
