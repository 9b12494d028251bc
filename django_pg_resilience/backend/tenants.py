"""django-tenants on the resilient backend (``ORIGINAL_BACKEND = "django_pg_resilience.backend"``).

django-tenants sets the tenant's ``search_path`` on each connection from its
``_cursor()``, and caches "already set on this connection" in
``search_path_set_schemas``. After a reconnect the new session has the default
``search_path``: the cache must go, so the next cursor sets it again (a read
replayed after a failover must never run in ``public``), and django-tenants' own
``SET search_path`` must not mark the session as holding state of its own. These
hooks do both; on any other backend the attributes are absent and they do nothing.
"""

from __future__ import annotations

from typing import Any

from django_pg_resilience.backend.hooks import ConnectionHooks

__all__ = ["DjangoTenantsHooks"]


class DjangoTenantsHooks(ConnectionHooks):
    """Forget django-tenants' per-session cache on a lost connection; its SET is its own."""

    def session_lost(self, wrapper: Any) -> None:
        if hasattr(wrapper, "search_path_set_schemas"):
            wrapper.search_path_set_schemas = None

    def applying_session_setup(self, wrapper: Any) -> bool:
        return bool(getattr(wrapper, "_setting_search_path", False))
