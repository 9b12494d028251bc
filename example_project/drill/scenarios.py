"""What goes wrong during the drill. Each scenario scripts one kind of failover.

A scenario gets the cluster, its endpoint proxy, the promotion delay and a
``mark(name)`` callback that timestamps what happened (``fault``,
``promoted``, ``endpoint_moved``) for the report.

* ``crash``: the primary dies (``pg_ctl stop -m immediate``); after the
  promotion delay the standby is promoted and the endpoint moves to it, as a
  managed database does.
* ``switchover``: a planned one: the primary shuts down cleanly (``fast``:
  sessions get ``57P01 admin_shutdown``), then the standby is promoted.
* ``blackhole``: the endpoint stops answering (packets dropped, no reset);
  the old primary is fenced (stopped), the standby promoted and the endpoint
  moved.
* ``rejoin``: a crash and a promotion, then the old primary comes back as a
  standby (``pg_rewind``) while the endpoint still points at it, as a stale DNS
  entry would: writes meet a read-only node (``25006``) until the endpoint moves.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django_pg_resilience.testing import EndpointProxy, LocalCluster, Node

Mark = Callable[[str], None]
Scenario = Callable[[LocalCluster, EndpointProxy, float, Mark], None]

#: How long the endpoint keeps pointing at the rejoined old primary.
STALE_ENDPOINT_SECONDS = 1.0


def _promote_and_move(
    cluster: LocalCluster,
    endpoint: EndpointProxy,
    standby: Node,
    promotion_delay: float,
    mark: Mark,
) -> None:
    """What the provider does after the fault: wait, promote, move the DNS name."""
    time.sleep(promotion_delay)
    new = cluster.promote(standby)
    mark("promoted")
    endpoint.point_to(new)
    mark("endpoint_moved")


def crash(
    cluster: LocalCluster, endpoint: EndpointProxy, promotion_delay: float, mark: Mark
) -> None:
    old, standby = cluster.primary, cluster.standbys[0]
    mark("fault")  # the node dies while pg_ctl runs: the mark comes first
    cluster.kill(old)
    _promote_and_move(cluster, endpoint, standby, promotion_delay, mark)


def switchover(
    cluster: LocalCluster, endpoint: EndpointProxy, promotion_delay: float, mark: Mark
) -> None:
    old, standby = cluster.primary, cluster.standbys[0]
    mark("fault")
    # A fast shutdown sends every WAL record to the standby before it exits.
    cluster.stop(old, "fast")
    _promote_and_move(cluster, endpoint, standby, promotion_delay, mark)


def blackhole(
    cluster: LocalCluster, endpoint: EndpointProxy, promotion_delay: float, mark: Mark
) -> None:
    old, standby = cluster.primary, cluster.standbys[0]
    endpoint.blackhole()
    mark("fault")
    time.sleep(promotion_delay)
    # Fence the old primary before promoting, as the provider does: two
    # writable primaries would split the data.
    cluster.stop(old, "fast")
    new = cluster.promote(standby)
    mark("promoted")
    endpoint.point_to(new)
    endpoint.restore()
    mark("endpoint_moved")


def rejoin(
    cluster: LocalCluster, endpoint: EndpointProxy, promotion_delay: float, mark: Mark
) -> None:
    old, standby = cluster.primary, cluster.standbys[0]
    mark("fault")  # the node dies while pg_ctl runs: the mark comes first
    cluster.kill(old)
    time.sleep(promotion_delay)
    new = cluster.promote(standby)
    mark("promoted")
    # The endpoint still names the old node, which comes back read-only.
    cluster.rejoin_as_standby(old)
    mark("old_primary_rejoined")
    time.sleep(STALE_ENDPOINT_SECONDS)
    endpoint.point_to(new)
    mark("endpoint_moved")


SCENARIOS: dict[str, Scenario] = {
    "crash": crash,
    "switchover": switchover,
    "blackhole": blackhole,
    "rejoin": rejoin,
}
