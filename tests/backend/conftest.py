"""Fixtures of the backend tests: a fresh cluster behind its endpoint, as a Django alias."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from django_pg_resilience.testing import LocalCluster, reset_process_state
from django_pg_resilience.testing.django import database_alias
from tests.testapp.models import Item


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    """Breakers, identities and counters are per process: start each test clean."""
    reset_process_state()
    yield
    reset_process_state()


def create_item_table(alias: str) -> None:
    with connections[alias].schema_editor() as editor:
        editor.create_model(Item)


@contextlib.contextmanager
def item_alias(alias: str, address: Any, **settings: Any) -> Iterator[str]:
    """A DATABASES alias at ``address`` (a node or proxy) with the Item table created."""
    with database_alias(alias, address, **settings):
        create_item_table(alias)
        yield alias


@pytest.fixture
def cluster(pg_fresh_cluster: LocalCluster, django_db_blocker: Any) -> Iterator[LocalCluster]:
    """A cluster of the test's own, with database access unblocked."""
    with django_db_blocker.unblock():
        yield pg_fresh_cluster


def fail_over(cluster: LocalCluster) -> Any:
    """Crash the primary, promote the standby, move the endpoint: return the new primary."""
    old = cluster.primary
    cluster.kill(old)
    new = cluster.promote(cluster.standbys[0])
    cluster.endpoint.point_to(new)
    return new
