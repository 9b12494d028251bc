"""Health endpoints. ``path("", include("django_pg_resilience.urls"))`` serves
/healthz (liveness), /readyz (readiness of this process) and /healthz/cluster
(the cluster report)."""

from __future__ import annotations

from django.urls import URLPattern, path

from django_pg_resilience.health import views

app_name = "pg_resilience"

urlpatterns: list[URLPattern] = [
    path("healthz", views.healthz, name="healthz"),
    path("healthz/cluster", views.cluster_health, name="cluster"),
    path("readyz", views.readyz, name="readyz"),
]
