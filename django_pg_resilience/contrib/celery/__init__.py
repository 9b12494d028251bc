"""Idempotent background jobs through a failover, for Celery (the ``celery`` extra).

Add ``"django_pg_resilience.contrib.celery"`` to INSTALLED_APPS and migrate (the
job-key table), then decorate tasks with :func:`idempotent_task`. The names are
imported on first use, so the app loads without Celery (``run_once`` works
with any queue).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["JobResult", "idempotent_task", "job_key", "process_webhook_event", "run_once"]

_HOMES = {
    "JobResult": "once",
    "job_key": "once",
    "run_once": "once",
    "idempotent_task": "tasks",
    "process_webhook_event": "tasks",
}


def __getattr__(name: str) -> Any:
    # Lazy: importing the app package (INSTALLED_APPS) must not import models
    # before the registry is ready, nor require Celery for run_once.
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
