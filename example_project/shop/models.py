from __future__ import annotations

from decimal import Decimal

from django.db import models


class Product(models.Model):
    title = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    inventory = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class Order(models.Model):
    """An order as Shopify's orders/create webhook describes it; one row per Shopify order."""

    shopify_order_id = models.BigIntegerField(unique=True)
    email = models.EmailField(blank=True, default="")
    total_price = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    currency = models.CharField(max_length=3, default="USD")
    line_item_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Order {self.shopify_order_id}"

    @classmethod
    def fields_from_payload(cls, payload: dict[str, object]) -> dict[str, object]:
        """The model fields of an orders/create payload (Shopify's JSON)."""
        line_items = payload.get("line_items") or []
        return {
            "shopify_order_id": int(str(payload["id"])),
            "email": str(payload.get("email") or ""),
            "total_price": Decimal(str(payload.get("total_price") or "0")),
            "currency": str(payload.get("currency") or "USD")[:3],
            "line_item_count": len(line_items) if isinstance(line_items, list) else 0,
        }


class Fulfilment(models.Model):
    """The effect of the ``fulfil_order`` background job (``shop/tasks.py``).

    ``order_ref`` is deliberately NOT unique: a job that took effect twice
    shows as a second row, which the drill's ``--jobs`` counts.
    """

    order_ref = models.BigIntegerField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Fulfilment of {self.order_ref}"
