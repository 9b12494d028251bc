"""The README's recipe: django-prometheus' database metrics on our resilient backend."""
