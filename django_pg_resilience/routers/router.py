"""``ReplicaRouter``: reads to a replica that is up, caught up and past the client's writes.

Writes, and every read inside a transaction on the primary, go to the primary.
A read goes to a replica only when all of these hold, else to the primary
(the reason is counted and signalled):

* ``down``: the replica's circuit breaker is closed and its last probe reached it;
* ``promoted``: it is still in recovery (a promoted replica is no replica of ours);
* ``unmeasured``: it was measured recently (the probe runs in the background);
* ``lag``: its replay lag is at most MAX_REPLICA_LAG;
* ``read_your_writes``: it replayed past the last write of this client.
"""

from __future__ import annotations

import random
from typing import Any

from django.db import connections

from django_pg_resilience import signals, stats
from django_pg_resilience.backend.alias import alias_state
from django_pg_resilience.routers.config import RouterConfig, replica_monitor, router_config
from django_pg_resilience.routers.context import RoutingState, current_state
from django_pg_resilience.routers.positions import parse_lsn
from django_pg_resilience.routers.status import ReplicaStatus

__all__ = ["ReplicaRouter", "primary_position"]

# When several replicas are unusable, the reason reported is the first of these.
_REASON_ORDER = ("read_your_writes", "lag", "promoted", "down", "unmeasured")


def primary_position(alias: str) -> int | None:
    """The primary's WAL insert position, read on this thread's connection to ``alias``.

    The insert position is past every record already written, committed or
    not, so a replica that replayed up to it holds every commit made before.
    """
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()::text")
        row = cursor.fetchone()
    return parse_lsn(row[0]) if row else None


def _why_not(
    status: ReplicaStatus | None, alias: str, config: RouterConfig, required: int | None
) -> str | None:
    """Why replica ``alias`` may not serve this read, or None when it may."""
    if alias_state(alias).breaker.state != "closed":
        return "down"
    if status is None:
        return "unmeasured"
    if status.error is not None:
        return "down"
    if status.promoted:
        return "promoted"
    if status.lag > config.max_lag:
        return "lag"
    if not status.has_replayed(required):
        return "read_your_writes"
    return None


class ReplicaRouter:
    """A database router for one primary and its read replicas. See the module docs.

    ::

        DATABASE_ROUTERS = ["django_pg_resilience.routers.ReplicaRouter"]
    """

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        config = router_config()
        if not config.replicas:
            return None
        state = current_state()
        primary = config.primary
        if state.pinned:
            return self._fallback(primary, "pinned")
        if connections[primary].in_atomic_block:
            return self._fallback(primary, "transaction")
        if state.unrecorded_write and not self._record_position(state, primary):
            return self._fallback(primary, "read_your_writes")
        monitor = replica_monitor()
        usable, reasons = [], set()
        for alias in config.replicas:
            reason = _why_not(monitor.status(alias), alias, config, state.required_position)
            if reason is None:
                usable.append(alias)
            else:
                reasons.add(reason)
        if not usable:
            return self._fallback(primary, next(r for r in _REASON_ORDER if r in reasons))
        alias = usable[0] if len(usable) == 1 else random.choice(usable)
        state.replicas_used.add(alias)
        stats.increment("replica_reads", alias)
        signals.replica_read.send(sender=ReplicaRouter, alias=alias)
        return alias

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        config = router_config()
        if not config.replicas:
            return None
        state = current_state()
        state.wrote = True
        state.unrecorded_write = True
        return config.primary

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        config = router_config()
        ours = {config.primary, *config.replicas}
        if obj1._state.db in ours and obj2._state.db in ours:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        config = router_config()
        if db in config.replicas:
            return False
        return None

    @staticmethod
    def _record_position(state: RoutingState, primary: str) -> bool:
        """Read the primary's position after this request's writes; False if it cannot be."""
        try:
            position = primary_position(primary)
        except Exception:
            return False
        state.require(position)
        state.unrecorded_write = False
        return position is not None

    @staticmethod
    def _fallback(primary: str, reason: str) -> str:
        stats.increment("primary_fallback_reads", reason)
        signals.primary_fallback.send(sender=ReplicaRouter, alias=primary, reason=reason)
        return primary
