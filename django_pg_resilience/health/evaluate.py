"""Thresholds, and the checks that turn a node's facts into OK / WARNING / CRITICAL / UNKNOWN."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from django_pg_resilience.conf import AppSettings, app_settings
from django_pg_resilience.health.probe import NodeFacts
from django_pg_resilience.health.status import Status
from django_pg_resilience.health.targets import Target

__all__ = ["Check", "Thresholds", "evaluate_groups", "evaluate_node"]

_SYNC_COMMIT_LOSSLESS = ("on", "remote_apply", "remote_write")


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Where a value turns WARNING or CRITICAL. Seconds and ratios (0.8 = 80 %).

    The defaults live in one place, ``conf.AppSettings`` (HEALTH_*): build one
    with :meth:`from_settings`.
    """

    lag_warning: float
    lag_critical: float
    connections_warning: float
    connections_critical: float
    oldest_transaction_warning: float
    #: A primary without a streaming standby is a WARNING (high availability expected).
    require_standby: bool
    #: The provider's node utilisation, ratios (DigitalOcean metrics endpoints).
    node_cpu_warning: float = AppSettings.HEALTH_NODE_CPU_WARNING
    node_cpu_critical: float = AppSettings.HEALTH_NODE_CPU_CRITICAL
    node_memory_warning: float = AppSettings.HEALTH_NODE_MEMORY_WARNING
    node_memory_critical: float = AppSettings.HEALTH_NODE_MEMORY_CRITICAL
    node_disk_warning: float = AppSettings.HEALTH_NODE_DISK_WARNING
    node_disk_critical: float = AppSettings.HEALTH_NODE_DISK_CRITICAL
    #: Seconds PgBouncer's longest-waiting client has waited.
    pgbouncer_wait_warning: float = AppSettings.HEALTH_PGBOUNCER_WAIT_WARNING
    pgbouncer_wait_critical: float = AppSettings.HEALTH_PGBOUNCER_WAIT_CRITICAL

    @classmethod
    def from_settings(cls, settings: AppSettings | None = None, **overrides: Any) -> Thresholds:
        """The HEALTH_* settings, with ``overrides`` (None values ignored) on top."""
        s = settings or app_settings()
        values: dict[str, Any] = {
            "lag_warning": s.HEALTH_LAG_WARNING,
            "lag_critical": s.HEALTH_LAG_CRITICAL,
            "connections_warning": s.HEALTH_CONNECTIONS_WARNING,
            "connections_critical": s.HEALTH_CONNECTIONS_CRITICAL,
            "oldest_transaction_warning": s.HEALTH_OLDEST_TRANSACTION_WARNING,
            "require_standby": s.HEALTH_REQUIRE_STANDBY,
            "node_cpu_warning": s.HEALTH_NODE_CPU_WARNING,
            "node_cpu_critical": s.HEALTH_NODE_CPU_CRITICAL,
            "node_memory_warning": s.HEALTH_NODE_MEMORY_WARNING,
            "node_memory_critical": s.HEALTH_NODE_MEMORY_CRITICAL,
            "node_disk_warning": s.HEALTH_NODE_DISK_WARNING,
            "node_disk_critical": s.HEALTH_NODE_DISK_CRITICAL,
            "pgbouncer_wait_warning": s.HEALTH_PGBOUNCER_WAIT_WARNING,
            "pgbouncer_wait_critical": s.HEALTH_PGBOUNCER_WAIT_CRITICAL,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def node_limits(self) -> dict[str, tuple[float, float]]:
        """(warning, critical) of each node resource: cpu, memory, disk."""
        return {
            "cpu": (self.node_cpu_warning, self.node_cpu_critical),
            "memory": (self.node_memory_warning, self.node_memory_critical),
            "disk": (self.node_disk_warning, self.node_disk_critical),
        }


@dataclasses.dataclass(frozen=True)
class Check:
    """One verdict: what was measured, against which thresholds, and what to do."""

    name: str
    status: Status
    message: str
    value: Any = None
    unit: str | None = None
    warning: float | None = None
    critical: float | None = None
    #: What the check is about inside the node (a standby's name, a slot).
    subject: str | None = None
    hint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = self.status.name
        return data


def _graded(value: float, warning: float | None, critical: float | None) -> Status:
    if not math.isfinite(value):
        return Status.UNKNOWN  # NaN compares false with everything: it would pass as OK
    if critical is not None and value >= critical:
        return Status.CRITICAL
    if warning is not None and value >= warning:
        return Status.WARNING
    return Status.OK


def _reachability(target: Target, facts: NodeFacts) -> Check:
    if facts.reachable:
        return Check("reachable", Status.OK, "accepts connections", value=True)
    # The only way to the primary of an alias is down: the app cannot write.
    sole_primary = target.expected_role == "primary" and target.group_size == 1
    return Check(
        "reachable",
        Status.CRITICAL if sole_primary else Status.WARNING,
        f"unreachable: {facts.error or 'no answer'}",
        value=False,
        hint="Is the server running and listening on this host and port? "
        "Check the network path and the credentials; during a failover, "
        "check that the endpoint points at the new primary.",
    )


def _role(target: Target, facts: NodeFacts) -> list[Check]:
    if facts.role is None or target.expected_role is None or target.group_size > 1:
        return []
    if facts.role == target.expected_role:
        return [Check("role", Status.OK, f"{facts.role} as expected", value=facts.role)]
    if target.expected_role == "primary":
        return [
            Check(
                "role",
                Status.CRITICAL,
                "expected the primary but this server is a standby: writes fail (read-only)",
                value=facts.role,
                hint="A failover moved the primary: point HOST (or the DNS name/endpoint) "
                "at the promoted server.",
            )
        ]
    return [
        Check(
            "role",
            Status.WARNING,
            "expected a standby but this server is the primary: reads load the primary",
            value=facts.role,
            hint="A standby was promoted or the replica endpoint moved: point it at a standby.",
        )
    ]


def _connections(facts: NodeFacts, thresholds: Thresholds) -> list[Check]:
    ratio = facts.connections_ratio
    if ratio is None:
        return []
    return [
        Check(
            "connections",
            _graded(ratio, thresholds.connections_warning, thresholds.connections_critical),
            f"{facts.connections_used} of max_connections {facts.connections_max} in use "
            f"({ratio:.0%})",
            value=round(ratio, 4),
            unit="ratio",
            warning=thresholds.connections_warning,
            critical=thresholds.connections_critical,
            hint="Use a pool (OPTIONS['pool'] or PgBouncer), lower CONN_MAX_AGE, "
            "or raise max_connections.",
        )
    ]


def _oldest_transaction(facts: NodeFacts, thresholds: Thresholds) -> list[Check]:
    age = facts.oldest_transaction_seconds or 0.0
    if not facts.reachable or facts.role is None:
        return []
    return [
        Check(
            "oldest_transaction",
            _graded(age, thresholds.oldest_transaction_warning, None),
            f"oldest open transaction: {age:.0f} s",
            value=round(age, 3),
            unit="s",
            warning=thresholds.oldest_transaction_warning,
            hint="Find it in pg_stat_activity (xact_start) and end it: long transactions "
            "hold back vacuum and replay on standbys.",
        )
    ]


def _lag_value(standby: Mapping[str, Any]) -> float:
    # The *_lag intervals go NULL once a standby has caught up and no WAL flows.
    return float(standby.get("replay_lag_seconds") or 0.0)


def _primary_checks(facts: NodeFacts, thresholds: Thresholds) -> list[Check]:
    checks: list[Check] = []
    streaming = [s for s in facts.standbys if s.get("state") == "streaming"]
    # Rows the user may not read (state NULL) are left to the "queries" check.
    visible = [s for s in facts.standbys if s.get("state") is not None]
    hidden = len(visible) < len(facts.standbys)
    if streaming or not thresholds.require_standby or hidden:
        status = Status.OK
        message = f"{len(streaming)} standby streaming" + ("" if len(streaming) == 1 else "s")
    else:
        status = Status.WARNING
        message = "no standby is streaming: a failover now has nowhere to go"
    checks.append(
        Check(
            "standbys_streaming",
            status,
            message,
            value=len(streaming),
            hint=None
            if status is Status.OK
            else "Start the standby or fix its primary_conninfo; see its server log.",
        )
    )
    for standby in visible:
        name = standby.get("application_name") or standby.get("client_addr") or "standby"
        lag = _lag_value(standby)
        lag_bytes = standby.get("replay_lag_bytes")
        state = standby.get("state")
        status = _graded(lag, thresholds.lag_warning, thresholds.lag_critical)
        if state != "streaming" and status is Status.OK:
            status = Status.WARNING
        checks.append(
            Check(
                "replication_lag",
                status,
                f"{name}: {state}, replay {lag:.1f} s / "
                f"{lag_bytes if lag_bytes is not None else '?'} bytes behind",
                value=round(lag, 3),
                unit="s",
                warning=thresholds.lag_warning,
                critical=thresholds.lag_critical,
                subject=str(name),
                hint=None
                if status is Status.OK
                else "A lagging standby loses that much data if promoted now. Look for "
                "paused replay, long queries on it, or a slow network or disk.",
            )
        )
    for slot in facts.slots:
        if slot.get("active") and slot.get("wal_status") != "lost":
            continue
        checks.append(
            Check(
                "replication_slot",
                Status.WARNING,
                f"slot {slot['slot_name']} is "
                + ("lost" if slot.get("wal_status") == "lost" else "inactive")
                + f" and retains {slot.get('retained_bytes') or 0} bytes of WAL",
                value=slot.get("retained_bytes"),
                unit="B",
                subject=str(slot["slot_name"]),
                hint="Drop the slot if its standby is gone (SELECT pg_drop_replication_slot(...)):"
                " an inactive slot keeps WAL until the disk fills.",
            )
        )
    lossless = _lossless(facts)
    checks.append(
        Check(
            "synchronous_replication",
            Status.OK,
            "a synchronous standby confirms each commit: a failover now loses nothing"
            if lossless
            else "asynchronous: a failover now can lose the commits the standbys lack",
            value=lossless,
        )
    )
    return checks


def _lossless(facts: NodeFacts) -> bool:
    sync = [s for s in facts.standbys if s.get("sync_state") in ("sync", "quorum")]
    return bool(
        facts.synchronous_standby_names
        and facts.synchronous_commit in _SYNC_COMMIT_LOSSLESS
        and sync
    )


def _standby_checks(facts: NodeFacts, thresholds: Thresholds) -> list[Check]:
    checks: list[Check] = []
    streaming = facts.wal_receiver_status == "streaming"
    if facts.wal_receiver_status is not None:
        checks.append(
            Check(
                "wal_receiver",
                Status.OK if streaming else Status.WARNING,
                f"WAL receiver {facts.wal_receiver_status}"
                + (f" from {facts.sender}" if facts.sender else ""),
                value=facts.wal_receiver_status,
                hint=None
                if streaming
                else "The standby is not receiving WAL: check that the primary is up and "
                "primary_conninfo points at it (after a failover, at the new primary).",
            )
        )
    if facts.replay_delay_seconds is not None:
        delay = float(facts.replay_delay_seconds)
        status = _graded(delay, thresholds.lag_warning, thresholds.lag_critical)
        checks.append(
            Check(
                "replay_delay",
                status,
                f"replay {delay:.1f} s / {facts.replay_lag_bytes or 0} bytes behind "
                "what it received",
                value=round(delay, 3),
                unit="s",
                warning=thresholds.lag_warning,
                critical=thresholds.lag_critical,
                hint=None
                if status is Status.OK
                else "Replay is behind: long queries on the standby, paused replay, or slow I/O.",
            )
        )
    if facts.replay_paused:
        checks.append(
            Check(
                "replay_paused",
                Status.WARNING,
                "WAL replay is paused",
                value=True,
                hint="Resume it with SELECT pg_wal_replay_resume(); a paused standby falls behind.",
            )
        )
    return checks


def _app_checks(target: Target, app: Mapping[str, Mapping[str, float]]) -> list[Check]:
    if target.source != "alias":
        return []
    if app.get("breaker_open", {}).get(target.group):
        return [
            Check(
                "circuit_breaker",
                Status.WARNING,
                "this process's circuit breaker for the alias is open (the app sees it down)",
                value=1,
                hint="The backend could not reach the database within its deadline; it "
                "probes again by itself.",
            )
        ]
    return []


def evaluate_node(
    target: Target,
    facts: NodeFacts,
    thresholds: Thresholds,
    app: Mapping[str, Mapping[str, float]] | None = None,
) -> list[Check]:
    """Every check of one node, most basic first."""
    checks = [_reachability(target, facts)]
    if facts.reachable:
        checks += _role(target, facts)
        checks += _connections(facts, thresholds)
        checks += _oldest_transaction(facts, thresholds)
        if facts.role == "primary":
            checks += _primary_checks(facts, thresholds)
        elif facts.role == "standby":
            checks += _standby_checks(facts, thresholds)
        if facts.query_errors:
            checks.append(
                Check(
                    "queries",
                    Status.UNKNOWN,
                    "could not read: " + "; ".join(facts.query_errors),
                    hint="GRANT pg_monitor TO the user the probe connects as.",
                )
            )
    checks += _app_checks(target, app or {})
    return checks


def evaluate_groups(targets: Sequence[Target], facts: Sequence[NodeFacts]) -> list[Check]:
    """Checks across the hosts of one multi-host alias: exactly one primary must answer."""
    groups: dict[str, list[tuple[Target, NodeFacts]]] = {}
    for target, node in zip(targets, facts, strict=True):
        groups.setdefault(target.group, []).append((target, node))
    checks: list[Check] = []
    for group, members in groups.items():
        target = members[0][0]
        if target.group_size < 2 or target.expected_role != "primary":
            continue
        primaries = [t.name for t, f in members if f.reachable and f.role == "primary"]
        if len(primaries) == 1:
            checks.append(
                Check(
                    "primary",
                    Status.OK,
                    f"{group}: primary is {primaries[0]}",
                    value=primaries[0],
                    subject=group,
                )
            )
        elif not primaries:
            checks.append(
                Check(
                    "primary",
                    Status.CRITICAL,
                    f"{group}: no host answers as the primary: writes fail",
                    value=None,
                    subject=group,
                    hint="Promote a standby (or wait for the provider's failover) and check "
                    "that the alias lists the new primary's host.",
                )
            )
        else:
            checks.append(
                Check(
                    "primary",
                    Status.CRITICAL,
                    f"{group}: {len(primaries)} hosts answer as primary ({', '.join(primaries)}):"
                    " split brain",
                    value=len(primaries),
                    subject=group,
                    hint="Stop the old primary now and rejoin it as a standby (pg_rewind).",
                )
            )
    return checks
