from __future__ import annotations

from django.apps import AppConfig


class PgResilienceConfig(AppConfig):
    name = "django_pg_resilience"
    verbose_name = "PostgreSQL resilience"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing registers the system checks and the setting_changed receiver.
        from django_pg_resilience import checks, conf  # noqa: F401
