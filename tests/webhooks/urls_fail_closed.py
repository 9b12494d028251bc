"""The test views, plus views whose secrets a misconfigured environment emptied."""

from __future__ import annotations

from django.urls import path

from tests.webhooks import views
from tests.webhooks.urls import urlpatterns as webhook_urlpatterns

urlpatterns = [
    *webhook_urlpatterns,
    path("empty-secret/shopify", views.EmptySecretShopify.as_view()),
    path("empty-secret/whitespace", views.WhitespaceSecretShopify.as_view()),
    path("empty-secret/standard", views.EmptyKeyStandard.as_view()),
]
