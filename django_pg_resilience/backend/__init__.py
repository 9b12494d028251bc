"""The resilient PostgreSQL backend: ``DATABASES[alias]["ENGINE"] = ENGINE``."""

#: The ENGINE string of this backend.
ENGINE = "django_pg_resilience.backend"
