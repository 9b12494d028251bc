"""PgBouncer in the health round: which consoles are read, and how their answers show."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from django_pg_resilience.health.evaluate import Check, Thresholds
from django_pg_resilience.health.nagios import nagios_number, perf_label
from django_pg_resilience.health.pgbouncer import RECOMMENDED, check_pgbouncers, pgbouncer_params
from django_pg_resilience.health.providers import Provider, ProviderResult, RoundContext, Sample
from django_pg_resilience.health.status import Status

__all__ = ["PgBouncerProvider"]


class PgBouncerProvider(Provider):
    """Every PgBouncer of ``PG_RESILIENCE['PGBOUNCERS']`` and of ``--pgbouncer``."""

    name = "pgbouncers"
    check_names = ("pgbouncer_reachable", "pgbouncer_waiting", "pgbouncer_settings")
    metrics = {
        "pgbouncer_up": ("gauge", "1 if PgBouncer's admin console answered the last check."),
        "pgbouncer_clients_waiting": (
            "gauge",
            "PgBouncer clients waiting for a server connection.",
        ),
        "pgbouncer_max_wait_seconds": (
            "gauge",
            "How long PgBouncer's oldest waiting client waited.",
        ),
        "pgbouncer_servers": ("gauge", "PgBouncer server connections by state."),
        "pgbouncer_setting_seconds": ("gauge", "PgBouncer settings that bound a failover."),
    }

    def _entries(self, context: RoundContext) -> dict[str, dict[str, Any]]:
        # Options: {"dsns": {name: DSN}} (manage.py health --pgbouncer), added to the setting.
        extra: Mapping[str, str] = context.options_for(self.name).get("dsns") or {}
        dsns = {**context.settings.PGBOUNCERS, **extra}
        return {name: pgbouncer_params(name, dsn) for name, dsn in dsns.items()}

    def enabled(self, context: RoundContext) -> bool:
        return bool(self._entries(context))  # a bad DSN raises ImproperlyConfigured here

    def budget(self, context: RoundContext) -> float:
        return context.timeout + 2  # check_pgbouncers stops waiting after timeout + 1

    def run(self, context: RoundContext) -> ProviderResult:
        facts, checks = check_pgbouncers(
            self._entries(context),
            timeout=context.timeout,
            wait_warning=context.thresholds.pgbouncer_wait_warning,
            wait_critical=context.thresholds.pgbouncer_wait_critical,
        )
        return ProviderResult(facts, checks)

    def unanswered(self, context: RoundContext, why: str) -> ProviderResult:
        check = Check("pgbouncer_reachable", Status.UNKNOWN, f"PgBouncer: {why}")
        return ProviderResult([], [check])

    # --- presentation ---

    def samples(self, facts: Any) -> Iterator[Sample]:
        for bouncer in facts:
            labels = {"pgbouncer": str(bouncer["name"])}
            yield "pgbouncer_up", labels, int(not bouncer.get("error"))
            if bouncer.get("error"):
                continue
            yield "pgbouncer_clients_waiting", labels, bouncer["clients_waiting"]
            yield "pgbouncer_max_wait_seconds", labels, bouncer["max_wait_seconds"]
            for state, count in sorted(bouncer["servers"].items()):
                yield "pgbouncer_servers", {**labels, "state": state}, count
            for setting, value in bouncer["config"].items():
                if setting in RECOMMENDED and value is not None:
                    yield "pgbouncer_setting_seconds", {**labels, "setting": setting}, float(value)

    def table_lines(self, facts: Any) -> list[str]:
        lines: list[str] = []
        for bouncer in facts:
            if bouncer.get("error"):
                lines += ["", f"PgBouncer {bouncer['name']}: unreachable"]
                continue
            config = bouncer["config"]
            servers = ", ".join(f"{n} {state}" for state, n in sorted(bouncer["servers"].items()))
            lines += [
                "",
                f"PgBouncer {bouncer['name']}: {bouncer['clients_waiting']} waiting "
                f"(longest {bouncer['max_wait_seconds']:.1f} s), servers {servers or 'none'}",
                "  " + ", ".join(f"{key} {config[key]}" for key in RECOMMENDED if key in config),
            ]
        return lines

    def perfdata(self, facts: Any, thresholds: Thresholds) -> list[str]:
        perf: list[str] = []
        for bouncer in facts:
            name = str(bouncer["name"])
            perf.append(
                f"{perf_label('pgbouncer', name, 'up')}={int(not bouncer.get('error'))};;;0;1"
            )
            if bouncer.get("error"):
                continue
            perf.append(
                f"{perf_label('pgbouncer', name, 'waiting')}={bouncer['clients_waiting']};;;0;"
            )
            perf.append(
                f"{perf_label('pgbouncer', name, 'max_wait')}={bouncer['max_wait_seconds']:.3f}s;"
                f"{nagios_number(thresholds.pgbouncer_wait_warning)};"
                f"{nagios_number(thresholds.pgbouncer_wait_critical)};0;"
            )
        return perf
