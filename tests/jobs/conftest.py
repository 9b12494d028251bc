"""Fixtures of the Celery tests: a Redis broker and worker processes of their own."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis
from django.core.management import call_command

from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
from django_pg_resilience.testing.jobs import CeleryWorker, RedisServer, redis_binary
from tests.jobs import servers
from tests.jobs.app import configure
from tests.jobs.jobs import JOBS_ALIAS, ready
from tests.jobs.worker_settings import JOBS_OPTIONS


@pytest.fixture(scope="session")
def redis_broker() -> Iterator[str]:
    """A Redis of the session's own; the Celery tests skip where redis-server is missing."""
    if redis_binary() is None:
        pytest.skip(
            "redis-server is not installed (apt-get install redis-server; "
            "python3 tests/run.py installs it when run as root)"
        )
    with RedisServer() as redis:
        configure(redis.url)
        yield redis.url


@pytest.fixture
def jobs_cluster(
    pg_fresh_cluster: LocalCluster, django_db_blocker: object
) -> Iterator[LocalCluster]:
    """JOBS_ALIAS on the test's own cluster (through its endpoint), migrated."""
    with (
        django_db_blocker.unblock(),  # type: ignore[attr-defined]
        database_alias(JOBS_ALIAS, pg_fresh_cluster.endpoint, OPTIONS=JOBS_OPTIONS),
    ):
        for label in ("testapp", "django_pg_resilience", "pg_resilience_celery"):
            call_command("migrate", label, database=JOBS_ALIAS, verbosity=0)
        yield pg_fresh_cluster


class StartWorker(Protocol):
    def __call__(
        self, settings: Mapping[str, Any] | None = None, queue: str | None = None
    ) -> AbstractContextManager[CeleryWorker]: ...


@pytest.fixture
def start_worker(
    redis_broker: str, jobs_cluster: LocalCluster, tmp_path: Path
) -> Iterator[StartWorker]:
    """Makes workers on the jobs cluster's endpoint (``settings``: their PG_RESILIENCE)."""
    # No message of an earlier test, in any queue (the session's own Redis).
    broker = redis.Redis.from_url(f"{redis_broker}/0")
    broker.flushdb()

    def start(
        settings: Mapping[str, Any] | None = None, queue: str | None = None
    ) -> AbstractContextManager[CeleryWorker]:
        return servers.jobs_worker(
            redis_broker, jobs_cluster.endpoint, tmp_path, settings=settings, queue=queue
        )

    yield start
    broker.flushdb()


def wait_ready(worker: CeleryWorker, timeout: float = 60.0, queue: str | None = None) -> None:
    try:
        assert ready.apply_async(queue=queue).get(timeout=timeout) == 1
    except Exception as exc:
        raise AssertionError(f"the worker did not come up: {exc}\n{worker.tail()}") from exc
