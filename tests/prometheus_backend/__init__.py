"""django-prometheus' database metrics on our resilient backend (docs/compatibility.md)."""
