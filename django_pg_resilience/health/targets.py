"""Which servers to check, and how to reach them without showing a password.

A target is one server: a DATABASES alias that uses this package's backend
(one target per host when HOST is ``"h1,h2"``), or an entry of
``PG_RESILIENCE["NODES"]``: ``{name: DSN}`` or ``{name: {DATABASES-style dict}}``,
where the dict may say which ``ROLE`` the node should have (``"primary"`` or
``"standby"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from django_pg_resilience.backend import ENGINE
from django_pg_resilience.conf import OPTIONS_KEY, app_settings

__all__ = ["ENGINE", "Target", "discover_targets", "masked_dsn", "node_targets"]

MASK = "********"
ROLES = ("primary", "standby")

#: OPTIONS keys Django (or this package) consumes itself; libpq never sees them.
_NOT_LIBPQ = frozenset(
    {
        OPTIONS_KEY,
        "isolation_level",
        "pool",
        "assume_role",
        "server_side_binding",
        "cursor_factory",
        "context",
        "prepare_threshold",
    }
)
_SECRET_PARAMS = frozenset({"password", "sslpassword"})


@dataclasses.dataclass(frozen=True)
class Target:
    """One server to probe."""

    #: Member name shown in reports: the alias or node name, plus the host when
    #: the alias lists several hosts.
    name: str
    #: The alias or NODES key this member belongs to.
    group: str
    #: "alias" (a DATABASES entry) or "node" (a PG_RESILIENCE["NODES"] entry).
    source: str
    #: The role this member should have, when known ("primary", "standby").
    expected_role: str | None
    #: Members in the group (several when HOST lists several hosts).
    group_size: int
    #: libpq parameters, password included: never shown.
    params: Mapping[str, Any] = dataclasses.field(repr=False)

    @property
    def host(self) -> str:
        return str(self.params.get("host") or "")

    @property
    def port(self) -> str:
        return str(self.params.get("port") or "")

    @property
    def dsn(self) -> str:
        """The connection string with every secret masked."""
        return masked_dsn(self.params)

    def scrub(self, text: str) -> str:
        """``text`` without this target's secrets (a driver message may echo a DSN)."""
        for key in _SECRET_PARAMS:
            secret = self.params.get(key)
            if secret:
                text = text.replace(str(secret), MASK)
        return text


def masked_dsn(params: Mapping[str, Any]) -> str:
    """A libpq connection string of ``params`` with passwords replaced by asterisks."""
    shown = {
        key: (MASK if key in _SECRET_PARAMS else value)
        for key, value in params.items()
        if value not in (None, "")
    }
    return make_conninfo("", **shown)


def _alias_params(settings_dict: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "dbname": settings_dict.get("NAME") or None,
        "user": settings_dict.get("USER") or None,
        "password": settings_dict.get("PASSWORD") or None,
        "host": settings_dict.get("HOST") or None,
        "port": settings_dict.get("PORT") or None,
    }
    options = settings_dict.get("OPTIONS") or {}
    for key, value in options.items():
        if key not in _NOT_LIBPQ and isinstance(value, str | int | float):
            params[key] = value
    if not params["dbname"] and "service" not in params:
        params["dbname"] = "postgres"  # what Django connects to when NAME is empty
    return {key: value for key, value in params.items() if value is not None}


def _alias_role(settings_dict: Mapping[str, Any]) -> str | None:
    attrs = str((settings_dict.get("OPTIONS") or {}).get("target_session_attrs", "any"))
    if attrs in ("read-only", "standby") or (settings_dict.get("TEST") or {}).get("MIRROR"):
        return "standby"
    if attrs == "prefer-standby":
        return None
    return "primary"


def _split_hosts(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One parameter set per host of a multi-host entry (libpq's ``h1,h2`` / ``p1,p2``)."""
    hosts = str(params.get("host") or "").split(",")
    if len(hosts) < 2:
        return [dict(params)]
    ports = str(params.get("port") or "").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    if len(ports) != len(hosts):
        raise ImproperlyConfigured(
            f"{len(hosts)} hosts but {len(ports)} ports in {masked_dsn(params)}: "
            "give one port, or one per host."
        )
    return [
        {**params, "host": h.strip(), "port": p.strip()} for h, p in zip(hosts, ports, strict=True)
    ]


def _targets(group: str, source: str, params: Mapping[str, Any], role: str | None) -> list[Target]:
    members = _split_hosts(params)
    return [
        Target(
            name=group
            if len(members) == 1
            else f"{group}@{member.get('host')}:{member.get('port')}",
            group=group,
            source=source,
            expected_role=role,
            group_size=len(members),
            params=member,
        )
        for member in members
    ]


def node_targets(nodes: Mapping[str, Any]) -> list[Target]:
    """Targets of ``PG_RESILIENCE["NODES"]``; a malformed entry raises ImproperlyConfigured."""
    found: list[Target] = []
    for name, entry in nodes.items():
        where = f"PG_RESILIENCE['NODES'][{name!r}]"
        role: str | None = None
        if isinstance(entry, str):
            try:
                params = conninfo_to_dict(entry)
            except psycopg.ProgrammingError as exc:
                # Never echo the string itself: it may hold a password.
                raise ImproperlyConfigured(
                    f"{where} is not a valid libpq connection string or URI "
                    f"({exc.__class__.__name__}). Use 'host=... port=... dbname=... user=...' or 'postgresql://user@host/db'."
                ) from None
        elif isinstance(entry, Mapping):
            role = entry.get("ROLE")
            if role not in (None, *ROLES):
                raise ImproperlyConfigured(
                    f"{where}['ROLE'] is {role!r}; use 'primary', 'standby' or leave it out."
                )
            params = _alias_params(entry)
        else:
            raise ImproperlyConfigured(
                f"{where} must be a connection string or a DATABASES-style dict, "
                f"not {type(entry).__name__}."
            )
        found.extend(_targets(str(name), "node", params, role))
    return found


def discover_targets(aliases: Sequence[str] | None = None) -> list[Target]:
    """The aliases to check (by default every alias on this backend) plus NODES.

    An unknown alias, or one that is not PostgreSQL, raises ImproperlyConfigured.
    """
    databases = settings.DATABASES
    if aliases:
        for alias in aliases:
            if alias not in databases:
                known = ", ".join(sorted(databases))
                raise ImproperlyConfigured(f"No database alias {alias!r}. Known: {known}.")
            engine = databases[alias].get("ENGINE", "")
            if engine != ENGINE and "postgresql" not in engine and "postgis" not in engine:
                raise ImproperlyConfigured(
                    f"Database alias {alias!r} uses {engine}, not PostgreSQL: nothing to check."
                )
        chosen = list(dict.fromkeys(aliases))
    else:
        chosen = [alias for alias, entry in databases.items() if entry.get("ENGINE") == ENGINE]
    found: list[Target] = []
    for alias in chosen:
        entry = databases[alias]
        found.extend(_targets(alias, "alias", _alias_params(entry), _alias_role(entry)))
    found.extend(node_targets(app_settings().NODES))
    return found
