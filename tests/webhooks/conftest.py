from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import call_command

from django_pg_resilience import stats
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
from tests.webhooks.views import FRESH_ALIAS, calls


@pytest.fixture(autouse=True)
def fresh_calls() -> Iterator[None]:
    calls.reset()
    stats.reset()
    yield
    calls.proceed.set()  # never leave a server thread blocked in handle()
    # Nor a failure armed for the tests of other directories, which share the views.
    calls.fail_with = calls.fail_first = None
    calls.block = False


@pytest.fixture
def fresh_alias(
    pg_fresh_cluster: LocalCluster, django_db_blocker: object
) -> Iterator[LocalCluster]:
    """FRESH_ALIAS on the test's own cluster (through its endpoint), migrated."""
    with (
        django_db_blocker.unblock(),  # type: ignore[attr-defined]
        database_alias(FRESH_ALIAS, pg_fresh_cluster.endpoint, OPTIONS={"connect_timeout": 2}),
    ):
        call_command("migrate", database=FRESH_ALIAS, verbosity=0)
        yield pg_fresh_cluster
