"""factory-boy factories for the shop (tests and ``manage.py seed_shop``)."""

from __future__ import annotations

from decimal import Decimal

import factory

from example_project.shop.models import Order, Product


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    title = factory.Sequence(lambda n: f"Product {n + 1}")
    price = factory.Sequence(lambda n: Decimal(5 + (n * 7) % 90) + Decimal("0.99"))
    inventory = factory.Sequence(lambda n: 10 + (n * 13) % 200)


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    shopify_order_id = factory.Sequence(lambda n: 820982911946154508 + n)
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    total_price = Decimal("19.99")
    line_item_count = 1
