"""The Celery app of the tests: the worker process loads it with ``celery -A tests.jobs.app``.

The broker and the database come from the environment the test gives the
worker (:mod:`tests.jobs.worker`); in the test process the fixtures set the
broker on the same app before anything is sent.
"""

from __future__ import annotations

import os

from celery import Celery

#: Environment variables the test passes to the worker process.
BROKER_ENV = "PG_RESILIENCE_TEST_BROKER"
DATABASE_ENV = "PG_RESILIENCE_TEST_JOBS_DB"
#: The one queue a worker consumes, when a test runs workers with different settings.
QUEUE_ENV = "PG_RESILIENCE_TEST_QUEUE"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.jobs.worker_settings")

app = Celery("pg_resilience_tests", include=["tests.jobs.jobs"])


def configure(broker: str) -> None:
    """Broker on db 0, results on db 1 of the test's own Redis at ``broker``."""
    app.conf.update(
        broker_url=f"{broker}/0",
        result_backend=f"{broker}/1",
        broker_connection_retry_on_startup=True,
        # One message at a time per child: with acks_late, a prefetched message
        # is not started, and a killed child holds only the task it ran.
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=None,
        worker_hijack_root_logger=False,
    )


configure(os.environ.get(BROKER_ENV, "redis://127.0.0.1:1"))
if os.environ.get(QUEUE_ENV):
    # This worker's queue; its tasks' retries go back to the queue they came from.
    app.conf.task_default_queue = os.environ[QUEUE_ENV]
