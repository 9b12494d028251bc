"""Django settings of the ``celery worker`` process the Celery tests start.

The suite's settings, with the jobs database pointed at the address the test
passes in the environment (a test cluster's endpoint proxy).
"""

from __future__ import annotations

import json
import os

from django_pg_resilience.testing.django import database_settings
from tests.jobs.app import DATABASE_ENV
from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

_host, _port = os.environ.get(DATABASE_ENV, "127.0.0.1:1").rsplit(":", 1)


class _Address:
    host = _host
    port = int(_port)


#: The failover profile the README recommends, with a short deadline: a task
#: gives the outage back to Celery quickly, which retries it later.
JOBS_OPTIONS = {
    "connect_timeout": 2,
    "resilience": {"io_timeout": 3.0, "tcp_user_timeout": 3.0, "deadline": 2.0},
}

DATABASES = {
    "default": database_settings(_Address(), OPTIONS=JOBS_OPTIONS),
    "jobs": database_settings(_Address(), OPTIONS=JOBS_OPTIONS),
}

INSTALLED_APPS = [*INSTALLED_APPS]

#: Settings a test gives its worker (JSON), e.g. a shrunk outage budget and cap.
OVERRIDES_ENV = "PG_RESILIENCE_TEST_OVERRIDES"

PG_RESILIENCE = {"RETRY_AFTER": 1, **json.loads(os.environ.get(OVERRIDES_ENV) or "{}")}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django_pg_resilience": {"handlers": ["stderr"], "level": "WARNING"}},
}
