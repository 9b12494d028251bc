"""django-health-check's view with the cluster checks, as a project would wire it."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path
from health_check.views import HealthCheckView

from django_pg_resilience.contrib.health_check import CLUSTER_CHECKS

urlpatterns: list[URLPattern | URLResolver] = [
    path("ht/", HealthCheckView.as_view(checks=CLUSTER_CHECKS)),
    path(
        "ht/detail/",
        HealthCheckView.as_view(
            checks=[("django_pg_resilience.contrib.health_check.ClusterHealth", {"detail": True})]
        ),
    ),
]
