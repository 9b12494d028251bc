"""The handler registry: the worker finds a view without importing the views module.

The whole package's import graph is checked in tests/test_imports.py."""

from __future__ import annotations

PACKAGE = "django_pg_resilience.webhooks"


def test_the_worker_finds_a_view_by_its_handler_path_without_importing_views() -> None:
    from django_pg_resilience.webhooks import registry
    from tests.webhooks.views import ShopifyOrders

    view = registry.load_view(registry.handler_path(ShopifyOrders))
    assert type(view) is ShopifyOrders
