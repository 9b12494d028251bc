"""Point Django at a :class:`LocalCluster` node or an :class:`EndpointProxy` in tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

from django.conf import settings
from django.db import connections

from django_pg_resilience.backend import ENGINE, compat
from django_pg_resilience.backend.alias import reset as reset_alias_state

__all__ = ["database_alias", "database_settings"]


class _Address(Protocol):
    host: str
    port: int


def database_settings(
    address: _Address,
    *,
    engine: str = ENGINE,
    name: str = "postgres",
    user: str = "postgres",
    password: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """A DATABASES entry for ``address`` (a node or a proxy), with defaults filled in."""
    entry: dict[str, Any] = {
        "ENGINE": engine,
        "NAME": name,
        "USER": user,
        "PASSWORD": password,
        "HOST": address.host,
        "PORT": str(address.port),
        "OPTIONS": {},
        "TEST": {"NAME": name},
    }
    entry.update(extra)
    # Fill in what Django's ConnectionHandler.configure_settings would.
    for key, default in (
        ("ATOMIC_REQUESTS", False),
        ("AUTOCOMMIT", True),
        ("CONN_MAX_AGE", 0),
        ("CONN_HEALTH_CHECKS", False),
        ("TIME_ZONE", None),
    ):
        entry.setdefault(key, default)
    for key in ("CHARSET", "COLLATION", "MIGRATE", "MIRROR"):
        entry["TEST"].setdefault(key, True if key == "MIGRATE" else None)
    return entry


@contextlib.contextmanager
def database_alias(alias: str, address: _Address, **kwargs: Any) -> Iterator[str]:
    """Add DATABASES[alias] pointing at ``address`` for the ``with`` block.

    The alias's connections are closed on the way out (in this thread; other
    threads close their own). Tests that use it with pytest-django need
    database access: ``django_db_blocker.unblock()`` or the ``django_db`` mark.

    ::

        with database_alias("failover", endpoint) as alias:
            call_command("migrate", database=alias, verbosity=0)
            Order.objects.using(alias).create(...)
    """
    if alias in settings.DATABASES:
        raise ValueError(f"DATABASES already has an alias {alias!r}")
    entry = database_settings(address, **kwargs)
    settings.DATABASES[alias] = entry
    connections.settings[alias] = entry
    # The alias's settings are resolved once per process: a name used before with
    # other OPTIONS starts afresh.
    reset_alias_state(alias)
    try:
        yield alias
    finally:
        with contextlib.suppress(Exception):
            connections[alias].close()
        with contextlib.suppress(AttributeError, KeyError):
            compat.forget_thread_connection(alias)
        settings.DATABASES.pop(alias, None)
        connections.settings.pop(alias, None)
        reset_alias_state(alias)
