"""django-tenants on top of our backend (``ORIGINAL_BACKEND = "django_pg_resilience.backend"``).

A tenant's queries run with ``search_path`` set to its schema. After a failover the
new session starts with the server's default path, ``public``: a read that lands
there returns another tenant's (or the shared) rows. The rule: after a failover a
read runs in the tenant's schema, or fails; never in ``public``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.db import connections
from django.test import override_settings

from django_pg_resilience.backend.base import ResilientDatabaseWrapperMixin
from django_pg_resilience.errors import FailoverError
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
from tests.backend.conftest import fail_over
from tests.backend.test_failover import _reset_when_running

pytest.importorskip("django_tenants")

TENANTS_ENGINE = "django_tenants.postgresql_backend"


@pytest.fixture
def tenants(cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The same table in the tenant's schema and in public, with different rows."""
    for schema, name in (("public", "shared-row"), ("acme", "acme-row")):
        cluster.primary.query(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        cluster.primary.query(f"CREATE TABLE {schema}.things (name text)")
        cluster.primary.query(f"INSERT INTO {schema}.things VALUES ('{name}')")
    cluster.wait_for_replay(cluster.standbys[0])
    with database_alias("tenants", cluster.endpoint, engine=TENANTS_ENGINE):
        connections["tenants"].set_schema("acme")
        yield cluster


def _things() -> list[str]:
    with connections["tenants"].cursor() as cursor:
        cursor.execute("SELECT name FROM things")
        return [row[0] for row in cursor.fetchall()]


def test_the_tenants_backend_is_built_on_ours(tenants: LocalCluster) -> None:
    wrapper = connections["tenants"]
    assert isinstance(wrapper, ResilientDatabaseWrapperMixin)
    assert type(wrapper).__module__ == "django_tenants.postgresql_backend.base"
    assert _things() == ["acme-row"]


def _read_or_refusal() -> list[str] | FailoverError:
    try:
        return _things()
    except FailoverError as exc:
        return exc


# TENANT_LIMIT_SET_CALLS: django-tenants sets search_path once per connection and remembers
# it; a replaced connection must not inherit that memory.
@pytest.mark.parametrize("limit_set_calls", [False, True])
def test_after_a_failover_no_read_runs_in_public(
    tenants: LocalCluster, limit_set_calls: bool
) -> None:
    with override_settings(TENANT_LIMIT_SET_CALLS=limit_set_calls):
        assert _things() == ["acme-row"]
        fail_over(tenants)
        first = _read_or_refusal()
        assert first == ["acme-row"] or isinstance(first, FailoverError)
        assert _things() == ["acme-row"]
        assert _things() == ["acme-row"]


def test_after_a_failover_the_first_read_rides_through_in_the_tenants_schema(
    tenants: LocalCluster,
) -> None:
    assert _things() == ["acme-row"]
    fail_over(tenants)
    assert _things() == ["acme-row"]


def _read_in_flight_during_a_reset(cluster: LocalCluster) -> list[str] | FailoverError:
    resetter = threading.Thread(target=_reset_when_running, args=(cluster, "tenant_marker"))
    resetter.start()
    try:
        with connections["tenants"].cursor() as cursor:
            cursor.execute("SELECT name, 'tenant_marker', pg_sleep(0.5) FROM things")
            return [row[0] for row in cursor.fetchall()]
    except FailoverError as exc:
        return exc
    finally:
        resetter.join()


def test_a_read_in_flight_is_never_replayed_in_public(tenants: LocalCluster) -> None:
    outcome = _read_in_flight_during_a_reset(tenants)
    assert outcome == ["acme-row"] or isinstance(outcome, FailoverError)
    assert _things() == ["acme-row"]


def test_a_read_in_flight_is_replayed_in_the_tenants_schema(tenants: LocalCluster) -> None:
    assert _read_in_flight_during_a_reset(tenants) == ["acme-row"]
