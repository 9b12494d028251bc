"""Health endpoints. ``path("", include("django_pg_resilience.urls"))`` serves /healthz, /readyz."""

from __future__ import annotations

from django.urls import URLPattern, path

from django_pg_resilience.health import views

app_name = "pg_resilience"

urlpatterns: list[URLPattern] = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
]
