from __future__ import annotations

from django.conf import settings
from django.urls import URLPattern, path

from example_project.shop import orders, views

urlpatterns: list[URLPattern] = [path("", views.storefront, name="storefront")]

if settings.PG_RESILIENCE_ENABLED:
    from example_project.shop.webhooks import OrdersCreate

    orders_create = OrdersCreate.as_view(durable_ack=settings.SHOPIFY_DURABLE_ACK)
else:
    from example_project.shop.naive import orders_create

urlpatterns.append(
    path("webhooks/shopify/orders-create", orders_create, name="shopify-orders-create")
)

urlpatterns += [
    path("api/orders/", orders.place_order, name="place-order"),
    path("api/orders/recent/", orders.recent_orders, name="recent-orders"),
    path("api/orders/<int:order_id>/", orders.show_order, name="show-order"),
]
