"""Failover without the proxy (a multi-host HOST), 25006 on a live connection, and pool mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import connections

from django_pg_resilience import stats
from django_pg_resilience.retry import atomic_with_retry
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
from tests.backend.conftest import create_item_table, fail_over, item_alias
from tests.testapp.models import Item


def _multi_host(cluster: LocalCluster) -> dict[str, str]:
    first, second = cluster.primary, cluster.standbys[0]
    return {"HOST": f"{first.host},{second.host}", "PORT": f"{first.port},{second.port}"}


def test_multi_host_reads_ride_through_a_failover_without_the_proxy(
    cluster: LocalCluster,
) -> None:
    with item_alias("ours", cluster.primary, **_multi_host(cluster)):
        Item.objects.using("ours").create(name="before")
        cluster.wait_for_replay(cluster.standbys[0])
        params = connections["ours"].get_connection_params()
        assert params["target_session_attrs"] == "read-write"

        cluster.kill(cluster.primary)
        new = cluster.promote(cluster.standbys[0])

        assert [Item.objects.using("ours").count() for _ in range(3)] == [1, 1, 1]
        Item.objects.using("ours").create(name="after")
        assert new.query("SELECT count(*) FROM testapp_item") == [(2,)]
        assert stats.snapshot()["failovers"]["ours"] == 1


def test_a_write_refused_with_25006_is_re_run_on_the_read_write_node(
    cluster: LocalCluster,
) -> None:
    """The node behind a live connection turns read-only (demoted): nothing is lost."""
    first, second = cluster.primary, cluster.standbys[0]
    with item_alias("ours", first, CONN_MAX_AGE=None, **_multi_host(cluster)):
        Item.objects.using("ours").create(name="on-first")
        cluster.wait_for_replay(second)
        first.query("ALTER SYSTEM SET default_transaction_read_only = on")
        first.query("SELECT pg_reload_conf()")
        cluster.promote(second)

        Item.objects.using("ours").create(name="on-second")

        assert second.query("SELECT name FROM testapp_item ORDER BY name") == [
            ("on-first",),
            ("on-second",),
        ]
        assert first.query("SELECT count(*) FROM testapp_item") == [(1,)]
        assert stats.snapshot()["retries"]["ours"] >= 1


@contextlib.contextmanager
def _pooled_alias(cluster: LocalCluster) -> Iterator[str]:
    pool = {"min_size": 2, "max_size": 4, "timeout": 10}
    with database_alias("pooled", cluster.endpoint, OPTIONS={"pool": pool}):
        try:
            create_item_table("pooled")
            yield "pooled"
        finally:
            connections["pooled"].close()
            connections["pooled"].close_pool()


def test_pool_mode_reads_and_retried_writes_ride_through_a_failover(
    cluster: LocalCluster,
) -> None:
    with _pooled_alias(cluster) as alias:
        pool = connections[alias].pool
        assert pool.connection_class.__name__ == "ResilientConnection"
        assert pool._check is None  # as in Django: no round trip per checkout by default
        Item.objects.using(alias).create(name="before")
        connections[alias].close()  # back to the pool: idle, to the old primary
        cluster.wait_for_replay(cluster.standbys[0])

        new = fail_over(cluster)

        assert [Item.objects.using(alias).count() for _ in range(3)] == [1, 1, 1]
        atomic_with_retry(lambda: Item.objects.using(alias).create(name="after"), using=alias)()
        assert new.query("SELECT count(*) FROM testapp_item") == [(2,)]
        assert stats.snapshot()["failovers"][alias] == 1  # detected once; the pool drained
