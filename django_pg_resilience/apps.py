from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import got_request_exception


class PgResilienceConfig(AppConfig):
    name = "django_pg_resilience"
    verbose_name = "PostgreSQL resilience"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing registers the system checks and the setting_changed receiver.
        from django_pg_resilience import checks, conf  # noqa: F401
        from django_pg_resilience.health import metrics
        from django_pg_resilience.middleware import note_availability_error

        # The cluster gauges and counters are on /metrics before the first scrape.
        metrics.install()

        # Once per process: the middleware reads what the receiver notes.
        got_request_exception.connect(
            note_availability_error, dispatch_uid="django_pg_resilience.middleware"
        )
        from django.contrib.auth.signals import user_logged_in

        from django_pg_resilience.maintenance import remember_staff_at_login

        # Staff pass maintenance; the flag lets a database-free session say so.
        user_logged_in.connect(
            remember_staff_at_login, dispatch_uid="django_pg_resilience.maintenance"
        )
