"""Models the tests write through the backend (each test module may add its own)."""

from __future__ import annotations

from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=100, unique=True)
    quantity = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.name


class ChaosOrder(models.Model):
    """An order created by the chaos suite's webhook handler (tests/chaos).

    ``webhook_key`` is deliberately NOT unique: a duplicated effect must be
    visible as a second row, not hidden by a constraint.
    """

    webhook_key = models.CharField(max_length=255, db_index=True)
    shop_order_id = models.BigIntegerField()

    def __str__(self) -> str:
        return self.webhook_key


class ChaosLedgerEntry(models.Model):
    """A unit of work of the chaos suite's ``atomic_with_retry`` worker."""

    token = models.CharField(max_length=64, unique=True)

    def __str__(self) -> str:
        return self.token
