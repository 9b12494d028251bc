"""django-health-check's view with the cluster checks, as a project would wire it
(4.x: the checks listed in the URLconf; 3.x: the registered plugins)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from django_pg_resilience.contrib.health_check import CLUSTER_CHECKS, LEGACY_PLUGINS

urlpatterns: list[URLPattern | URLResolver]
if LEGACY_PLUGINS:
    from health_check.views import MainView

    urlpatterns = [path("ht/", MainView.as_view())]
else:
    from health_check.views import HealthCheckView

    urlpatterns = [
        path("ht/", HealthCheckView.as_view(checks=CLUSTER_CHECKS)),
        path(
            "ht/detail/",
            HealthCheckView.as_view(
                checks=[
                    ("django_pg_resilience.contrib.health_check.ClusterHealth", {"detail": True})
                ]
            ),
        ),
    ]
