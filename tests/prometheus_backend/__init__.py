"""The recipe of docs/compatibility.md: django-prometheus' database metrics on our resilient backend."""
