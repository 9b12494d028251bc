from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from tests.middleware import views


def plain(request: HttpRequest) -> HttpResponse:
    """A page without the database, for the tests that cross processes."""
    return HttpResponse("plain page")


urlpatterns = [
    path("", views.page),
    path("shop/", views.page),
    path("plain/", plain),
    path("api/items/", views.api_items),
    path("buy/", views.buy),
    path("hooks/orders/", views.webhook),
    path("readyz/", views.health),
    path("status/ping", plain),
]
