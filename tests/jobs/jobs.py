"""The tasks the Celery tests send: an order job, and a probe that the worker is up."""

from __future__ import annotations

from typing import Any

from django.db import connections

from django_pg_resilience.contrib.celery import idempotent_task
from tests.jobs.app import app
from tests.testapp.models import ChaosOrder

#: The alias of the jobs database, in the test process and in the worker.
JOBS_ALIAS = "jobs"


@idempotent_task(key=lambda order_id: ("place-order", order_id), using=JOBS_ALIAS, app=app)
def place_order(order_id: int) -> dict[str, Any]:
    """Create the order's one row; a duplicated effect would be a second row."""
    order = ChaosOrder.objects.using(JOBS_ALIAS).create(
        webhook_key=f"job:{order_id}", shop_order_id=order_id
    )
    return {"order": order_id, "row": order.pk}


@app.task(name="tests.jobs.jobs.ready")
def ready() -> int:
    """Answers once the worker is up and can reach the jobs database."""
    with connections[JOBS_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
        return int(cursor.fetchone()[0])
