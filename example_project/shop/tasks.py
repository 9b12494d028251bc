"""The shop's background job: Celery runs it (``celery -A example_project.celery_app worker``).

Imported by the Celery worker only (autodiscovery): the site itself does not need Celery.
"""

from __future__ import annotations

from typing import Any

from django_pg_resilience.contrib.celery import idempotent_task
from example_project.shop.models import Fulfilment


@idempotent_task(key=lambda order_ref: ("fulfil-order", order_ref), name="shop.fulfil_order")
def fulfil_order(order_ref: int) -> dict[str, Any]:
    """Fulfil an order once, however often the job is sent, redelivered or retried."""
    fulfilment = Fulfilment.objects.create(order_ref=order_ref)
    return {"order": order_ref, "fulfilment": fulfilment.pk}
