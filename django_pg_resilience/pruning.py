"""Delete old rows in small batches: the retention of webhook events and job records."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet

__all__ = ["delete_in_batches"]


def delete_in_batches(queryset: QuerySet[Any], using: str, batch_size: int) -> int:
    """Delete every row of ``queryset``, ``batch_size`` at a time; the number deleted.

    Each batch is its own short transaction and skips rows another session holds,
    so pruning a large table never blocks the webhook views or the workers.
    """
    model = queryset.model
    deleted = 0
    while True:
        with transaction.atomic(using=using):
            keys = list(
                queryset.order_by("pk")
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:batch_size]
            )
            if not keys:
                return deleted
            deleted += model._default_manager.using(using).filter(pk__in=keys).delete()[0]
