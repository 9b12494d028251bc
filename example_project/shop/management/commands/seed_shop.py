from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from example_project.shop.models import Product


class Command(BaseCommand):
    help = "Create some products for the storefront (when there are none)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--products", type=int, default=20, help="How many (default 20).")

    def handle(self, *args: Any, products: int, **options: Any) -> None:
        from example_project.shop.factories import ProductFactory

        if Product.objects.exists():
            self.stdout.write("Products exist already; nothing to do.")
            return
        ProductFactory.create_batch(products)
        self.stdout.write(f"Created {products} products.")
