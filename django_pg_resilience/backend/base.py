"""PostgreSQL backend that rides through failovers (stub: being built in issue 3)."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base as postgresql

from django_pg_resilience.conf import OPTIONS_KEY


class DatabaseWrapper(postgresql.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        options = self.settings_dict["OPTIONS"]
        resilience = options.pop(OPTIONS_KEY, None)
        try:
            return super().get_connection_params()
        finally:
            if resilience is not None:
                options[OPTIONS_KEY] = resilience
