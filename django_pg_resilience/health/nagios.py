"""The report as a Nagios plugin line: ``PG_RESILIENCE <STATUS> - summary | perfdata``."""

from __future__ import annotations

import re

from django_pg_resilience.health.providers import registered
from django_pg_resilience.health.report import HealthReport

__all__ = ["nagios_number", "perf_label", "render_nagios"]

_LABEL_UNSAFE = re.compile(r"['=\s|]+")


def perf_label(*parts: str) -> str:
    """A perfdata label made of ``parts`` (quoted, no ``'``, ``=``, space or ``|``)."""
    return "'" + _LABEL_UNSAFE.sub("_", "_".join(p for p in parts if p)) + "'"


def nagios_number(value: float | None) -> str:
    """A threshold or value as perfdata writes it ("" when there is none)."""
    return "" if value is None else f"{value:g}"


def render_nagios(report: HealthReport) -> str:
    """``PG_RESILIENCE <STATUS> - summary | 'label'=value[UOM];warn;crit;min;max ...``."""
    perf = _node_perfdata(report)
    for provider in registered():
        facts = report.providers.get(provider.name)
        if facts is not None:
            perf += provider.perfdata(facts, report.thresholds)
    line = f"PG_RESILIENCE {report.status.name} - {report.summary()}".replace("|", "/")
    return line + (" | " + " ".join(perf) if perf else "") + "\n"


def _node_perfdata(report: HealthReport) -> list[str]:
    perf: list[str] = []
    t = report.thresholds
    lag_limits = f"{nagios_number(t.lag_warning)};{nagios_number(t.lag_critical)};0;"
    for node in report.nodes:
        f = node.facts
        name = node.target.name
        perf.append(f"{perf_label(name, 'up')}={int(f.reachable)};;;0;1")
        if f.connections_ratio is not None:
            perf.append(
                f"{perf_label(name, 'connections')}={f.connections_ratio * 100:.1f}%;"
                f"{nagios_number(t.connections_warning * 100)};"
                f"{nagios_number(t.connections_critical * 100)};0;100"
            )
        for standby in f.standbys:
            lag = standby.get("replay_lag_seconds") or 0.0
            label = perf_label(name, str(standby.get("application_name") or ""), "lag")
            perf.append(f"{label}={lag:.3f}s;{lag_limits}")
        if f.role == "standby" and f.replay_delay_seconds is not None:
            label = perf_label(name, "replay_delay")
            perf.append(f"{label}={f.replay_delay_seconds:.3f}s;{lag_limits}")
    return perf
