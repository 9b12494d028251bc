"""The drill asks a crashed old primary for the acknowledged orders the new one lacks."""

from __future__ import annotations

from django_pg_resilience.testing import LocalCluster
from example_project.drill.stack import Stack


def test_an_order_committed_on_the_old_primary_but_never_streamed_is_found_there(
    pg_fresh_cluster: LocalCluster,
) -> None:
    cluster = pg_fresh_cluster
    old, standby = cluster.primary, cluster.standbys[0]
    old.query("CREATE TABLE shop_order (shopify_order_id bigint NOT NULL)")
    old.query("INSERT INTO shop_order VALUES (1)")
    cluster.wait_for_replay(standby)
    # The standby receives nothing more: the next commit is the old primary's alone,
    # as in asynchronous replication's window before a crash.
    cluster.stop(standby)
    old.query("INSERT INTO shop_order VALUES (2)")
    cluster.kill(old)
    cluster.start(standby)
    cluster.promote(standby)
    stack = Stack(cluster=cluster)

    assert stack.orders_in_database() == [1]
    assert stack.orders_on_the_old_primary({2, 3}) == {2}
    # Asked, and stopped again: the endpoint's cluster keeps one primary.
    assert not old.is_running()
    assert cluster.primary is standby


def test_with_no_stopped_node_nobody_is_asked(pg_fresh_cluster: LocalCluster) -> None:
    # The rejoin scenario: the old primary runs again, as a standby rewound by pg_rewind.
    assert Stack(cluster=pg_fresh_cluster).orders_on_the_old_primary({1}) is None
