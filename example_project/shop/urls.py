from __future__ import annotations

from django.conf import settings
from django.urls import URLPattern, path

from example_project.shop import views

urlpatterns: list[URLPattern] = [path("", views.storefront, name="storefront")]

if settings.PG_RESILIENCE_ENABLED:
    from example_project.shop.webhooks import OrdersCreate

    orders_create = OrdersCreate.as_view(durable_ack=settings.SHOPIFY_DURABLE_ACK)
else:
    from example_project.shop.naive import orders_create

urlpatterns.append(
    path("webhooks/shopify/orders-create", orders_create, name="shopify-orders-create")
)
