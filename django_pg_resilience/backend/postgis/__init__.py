"""GeoDjango on a managed PostGIS: ``ENGINE = "django_pg_resilience.backend.postgis"``."""
