"""A /metrics as prometheus_client documents it (one process or PROMETHEUS_MULTIPROC_DIR),
the health endpoints, and two views that bump the package's metrics in whichever worker
answers."""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, include, path
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from django_pg_resilience import stats


def metrics(request: HttpRequest) -> HttpResponse:
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def count(request: HttpRequest) -> HttpResponse:
    stats.increment("webhooks_signature_failures", "test")
    return HttpResponse(str(os.getpid()))


def open_breaker(request: HttpRequest) -> HttpResponse:
    stats.set_gauge("breaker_open", "test", 1)
    return HttpResponse(str(os.getpid()))


urlpatterns: list[URLPattern | URLResolver] = [
    path("metrics", metrics),
    path("count", count),
    path("open-breaker", open_breaker),
    path("", include("django_pg_resilience.urls")),
]
