from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("example_project.shop.urls")),
    path("", include("django_pg_resilience.urls")),
    path("admin/", admin.site.urls),
]
