"""The Celery tests' worker: ``celery -A tests.jobs.app worker`` on a test cluster's address."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from django_pg_resilience.testing.jobs import CeleryWorker
from tests.jobs.app import BROKER_ENV, DATABASE_ENV

ROOT = Path(__file__).resolve().parent.parent.parent


class Address(Protocol):
    host: str
    port: int


def jobs_worker(broker: str, database: Address, log_dir: Path) -> CeleryWorker:
    """A prefork worker (2 processes) whose jobs database is ``database``; not started yet."""
    import os
    import uuid

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.jobs.worker_settings",
        BROKER_ENV: broker,
        DATABASE_ENV: f"{database.host}:{database.port}",
        "PYTHONPATH": str(ROOT),
    }
    log = log_dir / f"worker-{uuid.uuid4().hex[:8]}.log"
    return CeleryWorker("tests.jobs.app", env=env, log=log, cwd=ROOT)
