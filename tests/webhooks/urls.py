from __future__ import annotations

from django.urls import path

from tests.webhooks import views

urlpatterns = [
    path("shopify/orders", views.ShopifyOrders.as_view()),
    path("shopify/async", views.ShopifyAsync.as_view()),
    path("shopify/event-id", views.ShopifyByEventId.as_view()),
    path("shopify/small", views.ShopifySmallBody.as_view()),
    path("standard/orders", views.StandardOrders.as_view()),
    path("github/pushes", views.GitHubPushes.as_view()),
    path("fresh/shopify", views.FreshShopify.as_view()),
    path("fresh/durable", views.FreshDurable.as_view()),
    path("fresh/durable-no-wait", views.FreshDurableNoWait.as_view()),
    path("fresh/durable-session-lost", views.FreshDurableSessionLost.as_view()),
    path("fresh/durable-relaxed", views.FreshDurableRelaxed.as_view()),
    path("shopify/no-body-dedup", views.ShopifyWithoutBodyDedup.as_view()),
    path("shopify/strict-body", views.ShopifyStrictBody.as_view()),
    path("shopify/strict-body-async", views.ShopifyStrictBodyAsync.as_view()),
]
