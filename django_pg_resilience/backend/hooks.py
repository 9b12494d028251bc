"""How a backend composed with this one takes part when a session is replaced.

The resilient backend is a mixin: ``class DatabaseWrapper(ResilientDatabaseWrapperMixin,
SomeonesPostgresWrapper)``, or someone else's wrapper built on ours (django-tenants'
``ORIGINAL_BACKEND``). Such a backend often caches something about the session (a
``search_path`` already set) or sets per-connection state of its own each time it
opens a cursor. After a failover the session is new, so it must forget the cache;
and its own setup statements must not make the session look unique (which would
stop a read from being replayed on a fresh session).

Write a :class:`ConnectionHooks` and add it to the wrapper's ``connection_hooks``::

    from django_pg_resilience.backend.base import DatabaseWrapper as Resilient
    from django_pg_resilience.backend.hooks import ConnectionHooks


    class RoleHooks(ConnectionHooks):
        def session_lost(self, wrapper):
            wrapper.role_applied = None  # SET ROLE again on the next connection

        def applying_session_setup(self, wrapper):
            return getattr(wrapper, "applying_role", False)


    class DatabaseWrapper(Resilient):
        connection_hooks = (*Resilient.connection_hooks, RoleHooks())

The package's own hooks for django-tenants are in :mod:`.tenants`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConnectionHooks"]


class ConnectionHooks:
    """Override what your backend needs; the defaults do nothing."""

    def session_lost(self, wrapper: Any) -> None:
        """The connection of ``wrapper`` was dropped: forget what you cached about its session."""

    def applying_session_setup(self, wrapper: Any) -> bool:
        """True while ``wrapper`` runs your own per-connection setup (re-applied on every new
        connection), so the statement does not count as state only this session has."""
        return False
