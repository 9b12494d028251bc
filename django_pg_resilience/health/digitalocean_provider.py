"""DigitalOcean in the health round: when it is asked, how long its answer is kept, how it shows.

Each asking costs two requests of the token's API quota (5,000 an hour per
account, shared with everything else that uses it), four with the node
metrics. ``manage.py health`` asks every time; the endpoints' shared round
(``/readyz``, ``/healthz/cluster``, ``/metrics``) keeps an answer for
``DIGITALOCEAN_CACHE_SECONDS`` (default 60) per process, and one asking at a
time: whatever the traffic, a process makes at most four requests a minute.
A failed answer is kept as long: a refused token is not asked again and again.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from django_pg_resilience.health.digitalocean import cluster_facts, evaluate_cluster
from django_pg_resilience.health.digitalocean_http import TOKEN_ENV
from django_pg_resilience.health.digitalocean_metrics import RESOURCES
from django_pg_resilience.health.evaluate import Check, Thresholds
from django_pg_resilience.health.nagios import nagios_number, perf_label
from django_pg_resilience.health.providers import Provider, ProviderResult, RoundContext, Sample
from django_pg_resilience.health.status import Status

__all__ = ["DigitalOceanProvider", "configured", "forget_answers"]


def configured(settings: Any) -> bool:
    """The cluster is named and the token is there: the endpoints ask DigitalOcean."""
    return bool(settings.DIGITALOCEAN_CLUSTER and os.environ.get(TOKEN_ENV, "").strip())


class _Answers:
    """The last answer per (cluster, API, options), asked by one thread at a time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Held while asking: a round that comes during an asking waits for its answer
        # (bounded by the round's budget) instead of asking again.
        self._asking = threading.Lock()
        self._answers: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}

    def get(
        self, key: tuple[Any, ...], max_age: float, ask: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        with self._asking:
            found = self._answers.get(key)
            if found is not None and self._clock() - found[0] <= max_age:
                return _aged(found[1], self._clock() - found[0])
            facts = ask()
            self._answers[key] = (self._clock(), facts)
            return _aged(facts, 0.0)

    def clear(self) -> None:
        with self._asking:
            self._answers.clear()


def _aged(facts: dict[str, Any], seconds: float) -> dict[str, Any]:
    """A copy of a kept answer, its ages moved on by ``seconds``."""
    aged = copy.deepcopy(facts)
    aged["cached_seconds"] = round(seconds, 1)
    last = aged.get("last_failover")
    if isinstance(last, dict) and isinstance(last.get("age_seconds"), int | float):
        last["age_seconds"] = round(last["age_seconds"] + seconds, 1)
    return aged


_answers = _Answers()


def forget_answers() -> None:
    """Drop the kept answers (settings changed; tests)."""
    _answers.clear()


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "PG_RESILIENCE":
        _answers.clear()


class DigitalOceanProvider(Provider):
    """Cluster status, node count, last failover and node utilisation from the API."""

    name = "digitalocean"
    check_names = ("digitalocean", "digitalocean_node")
    metrics = {
        "digitalocean_api_up": ("gauge", "1 if the DigitalOcean API answered the last check."),
        "digitalocean_online": ("gauge", "1 if the DigitalOcean cluster status is online."),
        "digitalocean_nodes": ("gauge", "Nodes of the DigitalOcean cluster."),
        "digitalocean_last_failover_age_seconds": ("gauge", "Seconds since the last promotion."),
        "digitalocean_node_metrics_up": (
            "gauge",
            "1 if the node's DigitalOcean metrics endpoint answered the last check.",
        ),
        "digitalocean_node_cpu_ratio": ("gauge", "CPU busy on the database node (0-1)."),
        "digitalocean_node_memory_ratio": ("gauge", "Memory used on the database node (0-1)."),
        "digitalocean_node_disk_ratio": (
            "gauge",
            "Disk used on the database node's fullest volume.",
        ),
    }

    def enabled(self, context: RoundContext) -> bool:
        # Options: {"enabled": bool | None, "cluster": str | None} (manage.py health's flags).
        wanted = context.options_for(self.name).get("enabled")
        return configured(context.settings) if wanted is None else bool(wanted)

    def budget(self, context: RoundContext) -> float:
        # Sequential requests, each bounded by the timeout: the cluster, its events,
        # then (node metrics) the credentials and the endpoints in parallel.
        return context.timeout * (4 if context.settings.DIGITALOCEAN_NODE_METRICS else 2)

    def run(self, context: RoundContext) -> ProviderResult:
        settings = context.settings
        cluster = context.options_for(self.name).get("cluster") or settings.DIGITALOCEAN_CLUSTER
        node_metrics = settings.DIGITALOCEAN_NODE_METRICS

        def ask() -> dict[str, Any]:
            return cluster_facts(
                cluster,
                base_url=settings.DIGITALOCEAN_API_URL,
                timeout=context.timeout,
                node_metrics=node_metrics,
                metrics_ca=settings.DIGITALOCEAN_METRICS_CA,
            )

        if context.fresh:
            facts = ask()
        else:
            key = (cluster, settings.DIGITALOCEAN_API_URL, node_metrics, context.timeout)
            facts = _answers.get(key, settings.DIGITALOCEAN_CACHE_SECONDS, ask)
        limits = context.thresholds.node_limits() if node_metrics else None
        return ProviderResult(facts, evaluate_cluster(facts, limits))

    def unanswered(self, context: RoundContext, why: str) -> ProviderResult:
        cluster = (
            context.options_for(self.name).get("cluster") or context.settings.DIGITALOCEAN_CLUSTER
        )
        message = f"{why} from the DigitalOcean API"
        check = Check("digitalocean", Status.UNKNOWN, f"DigitalOcean: {message}")
        return ProviderResult({"cluster": cluster, "error": message}, [check])

    # --- presentation ---

    def samples(self, facts: Any) -> Iterator[Sample]:
        labels = {"cluster": str(facts.get("cluster"))}
        yield "digitalocean_api_up", labels, int(not facts.get("error"))
        if facts.get("error"):
            return
        yield "digitalocean_online", labels, int(facts.get("status") == "online")
        if isinstance(facts.get("num_nodes"), int):
            yield "digitalocean_nodes", labels, facts["num_nodes"]
        if facts.get("last_failover"):
            age = facts["last_failover"]["age_seconds"]
            yield "digitalocean_last_failover_age_seconds", labels, age
        for node in facts.get("nodes") or []:
            node_labels = {**labels, "node": str(node["node"])}
            yield "digitalocean_node_metrics_up", node_labels, int(not node.get("error"))
            for resource in RESOURCES:
                if node.get(f"{resource}_ratio") is not None:
                    name = f"digitalocean_node_{resource}_ratio"
                    yield name, node_labels, node[f"{resource}_ratio"]

    def table_lines(self, facts: Any) -> list[str]:
        if facts.get("error"):
            return []
        last = facts.get("last_failover")
        lines = [
            "",
            f"DigitalOcean {facts.get('name') or facts.get('cluster')}: {facts.get('status')}, "
            f"{facts.get('num_nodes')} node(s), last failover: "
            + (f"{last['at']} ({last['age_seconds'] / 60:.0f} min ago)" if last else "none listed"),
        ]
        for node in facts.get("nodes") or []:
            shown = node.get("error") or ", ".join(
                f"{resource} {node[f'{resource}_ratio']:.0%}"
                for resource in RESOURCES
                if node.get(f"{resource}_ratio") is not None
            )
            lines.append(f"  node {node['node']}: {shown}")
        return lines

    def perfdata(self, facts: Any, thresholds: Thresholds) -> list[str]:
        perf: list[str] = []
        limits = thresholds.node_limits()
        for node in facts.get("nodes") or []:
            for resource in RESOURCES:
                ratio = node.get(f"{resource}_ratio")
                if ratio is not None:
                    warning, critical = limits[resource]
                    perf.append(
                        f"{perf_label('do', str(node['node']), resource)}={ratio * 100:.1f}%;"
                        f"{nagios_number(warning * 100)};{nagios_number(critical * 100)};0;100"
                    )
        return perf
