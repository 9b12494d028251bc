"""Models the tests write through the backend (each test module may add its own)."""

from __future__ import annotations

from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=100, unique=True)
    quantity = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.name
