"""Run every check once and gather the result in one :class:`HealthReport`.

One round: the providers (:mod:`.providers`: DigitalOcean, PgBouncer, any
registered one) start in threads of their own, every node is probed in
parallel (:mod:`.probe`), the facts are evaluated (:mod:`.evaluate`), and the
providers' answers are merged in as they come, each within its budget.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from django_pg_resilience import stats
from django_pg_resilience.conf import app_settings
from django_pg_resilience.health.evaluate import Check, Thresholds, evaluate_groups, evaluate_node
from django_pg_resilience.health.probe import NodeFacts, probe_all
from django_pg_resilience.health.providers import RoundContext, registered, run_providers
from django_pg_resilience.health.status import Status, worst
from django_pg_resilience.health.targets import Target, discover_targets

__all__ = ["SCHEMA_VERSION", "HealthReport", "NodeReport", "round_budget", "run_checks"]

#: Bumped on any incompatible change of :meth:`HealthReport.as_dict`.
SCHEMA_VERSION = 1


@dataclasses.dataclass
class NodeReport:
    target: Target
    facts: NodeFacts
    checks: list[Check]
    #: This process's own counters for the node's alias (retries, reconnects, ...).
    app: dict[str, float] | None = None

    @property
    def status(self) -> Status:
        return worst(check.status for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        f = self.facts
        return {
            "name": self.target.name,
            "group": self.target.group,
            "source": self.target.source,
            "host": self.target.host,
            "port": self.target.port,
            "dsn": self.target.dsn,
            "expected_role": self.target.expected_role,
            "status": self.status.name,
            "reachable": f.reachable,
            "error": f.error,
            "connect_seconds": None if f.connect_seconds is None else round(f.connect_seconds, 4),
            "server_version": f.server_version,
            "role": f.role,
            "timeline": f.timeline,
            "connections": {
                "used": f.connections_used,
                "max": f.connections_max,
                "ratio": None if f.connections_ratio is None else round(f.connections_ratio, 4),
            },
            "oldest_transaction_seconds": f.oldest_transaction_seconds,
            "replication": None
            if f.role != "primary"
            else {
                "synchronous_commit": f.synchronous_commit,
                "synchronous_standby_names": f.synchronous_standby_names,
                "lossless_failover": next(
                    (c.value for c in self.checks if c.name == "synchronous_replication"), None
                ),
                "standbys": f.standbys,
                "slots": f.slots,
            },
            "recovery": None
            if f.role != "standby"
            else {
                "receive_lsn": f.receive_lsn,
                "replay_lsn": f.replay_lsn,
                "replay_delay_seconds": f.replay_delay_seconds,
                "replay_lag_bytes": f.replay_lag_bytes,
                "replay_paused": f.replay_paused,
                "wal_receiver_status": f.wal_receiver_status,
                "wal_receiver_streaming": f.wal_receiver_status == "streaming",
                "sender": f.sender,
            },
            "app": self.app,
            "checks": [check.as_dict() for check in self.checks],
        }


@dataclasses.dataclass
class HealthReport:
    """The outcome of one round of checks."""

    nodes: list[NodeReport]
    #: Checks that belong to no single node (multi-host aliases, DigitalOcean).
    checks: list[Check]
    thresholds: Thresholds
    timeout: float
    checked_at: datetime
    duration_seconds: float
    #: What each provider that ran said, by its name (see :mod:`.providers`).
    providers: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def digitalocean(self) -> dict[str, Any] | None:
        """What the DigitalOcean API said (None when it was not asked)."""
        facts: dict[str, Any] | None = self.providers.get("digitalocean")
        return facts

    @property
    def pgbouncers(self) -> list[dict[str, Any]] | None:
        """What each PgBouncer's admin console said (PG_RESILIENCE["PGBOUNCERS"], --pgbouncer)."""
        facts: list[dict[str, Any]] | None = self.providers.get("pgbouncers")
        return facts

    @property
    def status(self) -> Status:
        if not self.nodes and not self.checks:
            return Status.UNKNOWN  # nothing configured: we cannot say anything is fine
        statuses = [node.status for node in self.nodes] + [c.status for c in self.checks]
        return worst(statuses)

    @property
    def problems(self) -> list[tuple[str | None, Check]]:
        """Every check that is not OK, with its node's name (None for cluster-wide ones)."""
        found: list[tuple[str | None, Check]] = [
            (node.target.name, check)
            for node in self.nodes
            for check in node.checks
            if check.status is not Status.OK
        ]
        found += [(None, check) for check in self.checks if check.status is not Status.OK]
        return sorted(found, key=lambda item: -item[1].status.severity)

    def summary(self) -> str:
        """One sentence: the overall status and the first problem."""
        problems = self.problems
        if not self.nodes and not self.checks:
            return "no database to check: no alias uses the backend and NODES is empty"
        if not problems:
            return f"{len(self.nodes)} node{'s' if len(self.nodes) != 1 else ''} healthy"
        name, check = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return f"{name + ': ' if name else ''}{check.message}{more}"

    def as_dict(self, *, detailed: bool = True) -> dict[str, Any]:
        """The documented JSON schema (``detailed=False``: the overall status only)."""
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "status": self.status.name,
            "exit_code": int(self.status),
            "checked_at": self.checked_at.isoformat(),
        }
        if not detailed:
            return data
        data.update(
            {
                "summary": self.summary(),
                "duration_seconds": round(self.duration_seconds, 4),
                "timeout_seconds": self.timeout,
                "thresholds": self.thresholds.as_dict(),
                "nodes": [node.as_dict() for node in self.nodes],
                "checks": [check.as_dict() for check in self.checks],
            }
        )
        # Every provider's key is there (None when it was not asked): a stable schema.
        data.update({p.name: self.providers.get(p.name) for p in registered()})
        return data


def run_checks(
    aliases: Sequence[str] | None = None,
    *,
    thresholds: Thresholds | None = None,
    timeout: float | None = None,
    digitalocean: bool | None = False,
    do_cluster: str | None = None,
    targets: Sequence[Target] | None = None,
    pgbouncers: Mapping[str, str] | None = None,
    fresh: bool = True,
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> HealthReport:
    """Probe every node in parallel, ask the providers, evaluate, and return the report.

    Takes at most about ``timeout`` seconds (``PG_RESILIENCE['HEALTH_TIMEOUT']``)
    whatever the nodes do (a provider: up to its budget, see :func:`round_budget`).
    ``digitalocean``: ask the DigitalOcean API (None: when it is configured);
    ``pgbouncers`` ({name: DSN}) adds to ``PG_RESILIENCE['PGBOUNCERS']``;
    ``provider_options`` passes options to other providers by name. ``fresh=False``
    lets providers answer from their own caches (the endpoints' shared round).
    Bad configuration raises ImproperlyConfigured.
    """
    settings = app_settings()
    context = RoundContext(
        settings=settings,
        thresholds=thresholds or Thresholds.from_settings(settings),
        timeout=settings.HEALTH_TIMEOUT if timeout is None else timeout,
        fresh=fresh,
        options={
            **(provider_options or {}),
            "digitalocean": {"enabled": digitalocean, "cluster": do_cluster},
            "pgbouncers": {"dsns": dict(pgbouncers or {})},
        },
    )
    targets = list(discover_targets(aliases) if targets is None else targets)
    checked_at = datetime.now(timezone.utc)
    started = time.monotonic()
    # Started first (a bad setting raises before any thread), answered while the nodes are probed.
    providers = run_providers(context)
    all_facts = probe_all(targets, context.timeout)
    nodes = _node_reports(targets, all_facts, context.thresholds)
    checks = evaluate_groups(targets, all_facts)
    answers = providers.collect()
    for answer in answers.values():
        checks += answer.checks
    return HealthReport(
        nodes=nodes,
        checks=checks,
        thresholds=context.thresholds,
        timeout=context.timeout,
        checked_at=checked_at,
        duration_seconds=time.monotonic() - started,
        providers={name: answer.facts for name, answer in answers.items()},
    )


def round_budget(context: RoundContext) -> float:
    """The longest a round with ``context`` may take: the probes' timeout, or the
    budget of the slowest provider it asks."""
    budgets = [p.budget(context) for p in registered() if p.enabled(context)]
    return max([context.timeout, *budgets])


def _node_reports(
    targets: Sequence[Target], all_facts: Sequence[NodeFacts], thresholds: Thresholds
) -> list[NodeReport]:
    app_view = stats.snapshot()
    return [
        NodeReport(
            target=target,
            facts=facts,
            checks=evaluate_node(target, facts, thresholds, app_view),
            app=_app_view_of(target, app_view),
        )
        for target, facts in zip(targets, all_facts, strict=True)
    ]


def _app_view_of(target: Target, snapshot: dict[str, dict[str, float]]) -> dict[str, float] | None:
    if target.source != "alias":
        return None
    return {
        metric: by_label[target.group]
        for metric, by_label in sorted(snapshot.items())
        if target.group in by_label and _labelled_by_alias(metric)
    }


def _labelled_by_alias(metric: str) -> bool:
    known = stats.METRICS.get(metric)
    return known is not None and known[2] == "alias"
