"""The app that registers the cluster checks with django-health-check 3.x (4.x needs no app)."""

from __future__ import annotations

from django.apps import AppConfig


class HealthCheckConfig(AppConfig):
    name = "django_pg_resilience.contrib.health_check"
    label = "pg_resilience_health_check"
    verbose_name = "django-pg-resilience checks for django-health-check"

    def ready(self) -> None:
        from django_pg_resilience.contrib.health_check import (
            LEGACY_PLUGINS,
            register_legacy_plugins,
        )

        if LEGACY_PLUGINS:
            register_legacy_plugins()
