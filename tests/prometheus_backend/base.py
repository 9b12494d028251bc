"""``ENGINE = "tests.prometheus_backend"``: the recipe of docs/compatibility.md, verbatim."""

from __future__ import annotations

from typing import Any

from django_prometheus.db.common import DatabaseWrapperMixin, ExportingCursorWrapper

from django_pg_resilience.backend import base as resilient


class DatabaseWrapper(DatabaseWrapperMixin, resilient.DatabaseWrapper):
    """django-prometheus counts connections and statements; ours reconnects and retries."""

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        # psycopg 3 creates the instrumented cursors itself (as django-prometheus does).
        params["cursor_factory"] = ExportingCursorWrapper(
            params["cursor_factory"], self.alias, self.vendor
        )
        return params

    def create_cursor(self, name: str | None = None) -> Any:
        # The mixin's create_cursor is psycopg 2's; Django's own works with the factory above.
        return resilient.DatabaseWrapper.create_cursor(self, name=name)
