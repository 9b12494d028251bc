"""Django's PostGIS backend with the failover behaviour of :mod:`django_pg_resilience.backend`.

::

    DATABASES = {
        "default": {
            "ENGINE": "django_pg_resilience.backend.postgis",  # instead of
            # django.contrib.gis.db.backends.postgis
            ...
        }
    }

Everything else (features, operations, introspection, the geometry adapters
registered on each new connection) is Django's PostGIS backend. A reconnect
registers the adapters again on the new connection, through Django's own
``get_new_connection``; the type OIDs it caches per alias stay valid across a
failover, because a promoted standby is a physical copy of the primary.
"""

from __future__ import annotations

from django.contrib.gis.db.backends.postgis.base import DatabaseWrapper as PostGISDatabaseWrapper

from django_pg_resilience.backend.base import ResilientDatabaseWrapperMixin

__all__ = ["DatabaseWrapper"]


class DatabaseWrapper(ResilientDatabaseWrapperMixin, PostGISDatabaseWrapper):
    """Django's PostGIS DatabaseWrapper that reconnects, retries where safe and fails fast."""
