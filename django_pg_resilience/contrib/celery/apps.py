from __future__ import annotations

from django.apps import AppConfig


class PgResilienceCeleryConfig(AppConfig):
    name = "django_pg_resilience.contrib.celery"
    label = "pg_resilience_celery"
    verbose_name = "PostgreSQL resilience: idempotent Celery tasks"
    default_auto_field = "django.db.models.BigAutoField"
