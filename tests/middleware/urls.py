from __future__ import annotations

from django.urls import path

from tests.middleware import views

urlpatterns = [
    path("", views.page),
    path("shop/", views.page),
    path("api/items/", views.api_items),
    path("buy/", views.buy),
    path("whoami/", views.whoami),
    path("cart/", views.remember_cart),
    path("lazy/", views.lazy_template),
    path("hooks/orders/", views.webhook),
    path("mw-query/hooks/orders/", views.webhook),
    path("mw-query/page/", views.page),
    path("readyz/", views.health),
    path("duplicate/", views.duplicate),
    path("bug/", views.bug),
    path("async/", views.async_page),
]
