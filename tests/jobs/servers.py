"""The Celery tests' worker: ``celery -A tests.jobs.app worker`` on a test cluster's address."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from django_pg_resilience.testing.jobs import CeleryWorker
from tests.jobs.app import BROKER_ENV, DATABASE_ENV, QUEUE_ENV
from tests.jobs.worker_settings import OVERRIDES_ENV

ROOT = Path(__file__).resolve().parent.parent.parent


class Address(Protocol):
    host: str
    port: int


def worker_env(
    broker: str | None, database: Address, settings: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The environment of a worker process on ``database`` with ``settings`` in PG_RESILIENCE."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.jobs.worker_settings",
        BROKER_ENV: broker or "redis://127.0.0.1:1",
        DATABASE_ENV: f"{database.host}:{database.port}",
        OVERRIDES_ENV: json.dumps(dict(settings or {})),
        "PYTHONPATH": str(ROOT),
    }


def jobs_worker(
    broker: str,
    database: Address,
    log_dir: Path,
    settings: Mapping[str, Any] | None = None,
    queue: str | None = None,
) -> CeleryWorker:
    """A prefork worker (2 processes) whose jobs database is ``database``; not started yet.

    ``settings`` go to its PG_RESILIENCE; ``queue``: the one queue it consumes
    (default: Celery's default queue).
    """
    env = worker_env(broker, database, settings)
    if queue is not None:
        env[QUEUE_ENV] = queue
    log = log_dir / f"worker-{uuid.uuid4().hex[:8]}.log"
    return CeleryWorker("tests.jobs.app", env=env, log=log, cwd=ROOT)
