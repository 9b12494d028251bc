"""The DigitalOcean Managed Databases view: cluster status, node count, last failover.

Two calls of the public API (``GET /v2/databases/{uuid}`` and
``GET /v2/databases/{uuid}/events``) with a Bearer token read from the
``DIGITALOCEAN_TOKEN`` environment variable; then the nodes' CPU, memory and
disk utilisation from the cluster's metrics endpoints (see
:mod:`.digitalocean_metrics`). The token never appears in any
message; every failure becomes an UNKNOWN check that says what to fix. Every
request goes through :mod:`.digitalocean_http`: https only (plain http to a
loopback test server), no redirect, bounded in time and size.

:func:`check_cluster` asks now; the endpoints' shared round asks through
:mod:`.digitalocean_provider`, which keeps the answer for
``DIGITALOCEAN_CACHE_SECONDS``.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from django_pg_resilience.health.digitalocean_http import (
    TOKEN_ENV,
    DigitalOceanError,
    check_api_url,
    check_token,
    fetch,
)
from django_pg_resilience.health.digitalocean_metrics import evaluate_nodes, fetch_node_metrics
from django_pg_resilience.health.evaluate import Check
from django_pg_resilience.health.status import Status

__all__ = [
    "TOKEN_ENV",
    "DigitalOceanError",
    "check_api_url",
    "check_cluster",
    "check_token",
    "cluster_facts",
    "evaluate_cluster",
    "fetch_cluster",
]

_BUSY_STATES = ("creating", "resizing", "migrating", "forking")
_FAILOVER_EVENT = "cluster_master_promotion"

_API_ERRORS = {
    401: f"the API refused the token (401 Unauthorized): check {TOKEN_ENV} "
    "(a read-scoped token for databases)",
    404: "no such database cluster (404 Not Found): check the cluster UUID "
    "(--do-cluster or PG_RESILIENCE['DIGITALOCEAN_CLUSTER'])",
}


def _get(base_url: str, path: str, token: str, timeout: float, kind: str) -> Any:
    url = base_url.rstrip("/") + path
    request = urllib.request.Request(  # noqa: S310 (scheme checked by check_api_url)
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    body = fetch(request, timeout, _API_ERRORS, kind=kind)
    try:
        return json.loads(body)
    except ValueError:
        raise DigitalOceanError(f"the API's answer for {path} is not JSON") from None


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def fetch_cluster(
    cluster: str, *, base_url: str, token: str, timeout: float, now: datetime | None = None
) -> dict[str, Any]:
    """The cluster's status, node count and last failover, as a JSON-ready dict.

    Raises :class:`DigitalOceanError` with a message safe to show.
    """
    check_api_url(base_url)
    check_token(token)
    quoted = urllib.parse.quote(cluster, safe="")
    data = _get(base_url, f"/v2/databases/{quoted}", token, timeout, "cluster")
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise DigitalOceanError("the API's answer has no 'database' object")
    events_data = _get(base_url, f"/v2/databases/{quoted}/events", token, timeout, "events")
    events = events_data.get("events") if isinstance(events_data, dict) else None
    if not isinstance(events, list):
        raise DigitalOceanError("the API's events answer has no 'events' list")
    promotions = [
        (moment, event)
        for event in events
        if isinstance(event, dict) and event.get("event_type") == _FAILOVER_EVENT
        for moment in [_parse_time(event.get("create_time"))]
        if moment is not None
    ]
    last = max(promotions, key=lambda pair: pair[0], default=None)
    now = now or datetime.now(timezone.utc)
    return {
        "cluster": cluster,
        "name": database.get("name"),
        "engine": database.get("engine"),
        "version": database.get("version"),
        "status": database.get("status"),
        "num_nodes": database.get("num_nodes"),
        "metrics_endpoints": [
            {"host": endpoint.get("host"), "port": endpoint.get("port")}
            for endpoint in database.get("metrics_endpoints") or []
            if isinstance(endpoint, dict)
        ],
        "last_failover": None
        if last is None
        else {
            "id": last[1].get("id"),
            "at": last[0].isoformat(),
            "age_seconds": round((now - last[0]).total_seconds(), 1),
        },
    }


def cluster_facts(
    cluster: str | None,
    *,
    base_url: str,
    timeout: float,
    node_metrics: bool = False,
    metrics_ca: str | None = None,
) -> dict[str, Any]:
    """What the API (and, with ``node_metrics``, the metrics endpoints) said, as a
    JSON-ready dict; never raises for API trouble: ``error`` (or ``nodes_error``) says why."""
    facts: dict[str, Any] = {"cluster": cluster, "error": None}
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not cluster:
        facts["error"] = (
            "no cluster UUID: pass --do-cluster UUID or set PG_RESILIENCE['DIGITALOCEAN_CLUSTER']"
        )
        return facts
    if not token:
        facts["error"] = f"no API token: set the {TOKEN_ENV} environment variable"
        return facts
    try:
        facts = {
            **fetch_cluster(cluster, base_url=base_url, token=token, timeout=timeout),
            "error": None,
        }
    except DigitalOceanError as exc:
        facts["error"] = _scrub(str(exc), token)
        return facts
    except Exception as exc:  # a bug must not print a traceback that quotes the token
        facts["error"] = f"the check failed: {exc.__class__.__name__}"
        return facts
    if node_metrics and facts["metrics_endpoints"]:
        _add_node_metrics(facts, base_url, token, timeout, metrics_ca)
    return facts


def evaluate_cluster(
    facts: Mapping[str, Any], node_thresholds: Mapping[str, tuple[float, float]] | None = None
) -> list[Check]:
    """The checks of :func:`cluster_facts`' answer (the node checks with ``node_thresholds``)."""
    if facts.get("error"):
        return [Check("digitalocean", Status.UNKNOWN, f"DigitalOcean: {facts['error']}")]
    checks = _status_checks(facts)
    if node_thresholds is None:
        return checks
    if facts.get("nodes_error"):
        message = f"DigitalOcean node metrics: {facts['nodes_error']}"
        return [*checks, Check("digitalocean_node", Status.UNKNOWN, message)]
    if "nodes" in facts:
        checks += evaluate_nodes(facts["nodes"], node_thresholds)
    return checks


def check_cluster(
    cluster: str | None,
    *,
    base_url: str,
    timeout: float,
    node_thresholds: Mapping[str, tuple[float, float]] | None = None,
    metrics_ca: str | None = None,
) -> tuple[dict[str, Any], list[Check]]:
    """The DigitalOcean facts and checks, asked now; never raises for API trouble.

    With ``node_thresholds`` (``{"cpu"|"memory"|"disk": (warning, critical)}``)
    the nodes' utilisation is read from the cluster's metrics endpoints too.
    """
    facts = cluster_facts(
        cluster,
        base_url=base_url,
        timeout=timeout,
        node_metrics=node_thresholds is not None,
        metrics_ca=metrics_ca,
    )
    return facts, evaluate_cluster(facts, node_thresholds)


def _add_node_metrics(
    facts: dict[str, Any], base_url: str, token: str, timeout: float, ca_file: str | None
) -> None:
    try:
        facts["nodes"] = fetch_node_metrics(
            facts["metrics_endpoints"],
            base_url=base_url,
            token=token,
            timeout=timeout,
            ca_file=ca_file,
        )
    except DigitalOceanError as exc:
        facts["nodes_error"] = _scrub(str(exc), token)
    except Exception as exc:  # a bug must not print a traceback that quotes a secret
        facts["nodes_error"] = f"the node metrics check failed: {exc.__class__.__name__}"


def _scrub(text: str, token: str) -> str:
    """``text`` without the token or any line of it (a token with a line break)."""
    for secret in (token, *token.splitlines()):
        if len(secret.strip()) >= 4:
            text = text.replace(secret.strip(), "********")
    return text


def _status_checks(facts: Mapping[str, Any]) -> list[Check]:
    state = facts.get("status")
    nodes = facts.get("num_nodes")
    if state == "online":
        status = Status.OK
        hint = None
    elif state in _BUSY_STATES:
        status = Status.WARNING
        hint = "The provider is changing the cluster; connections may drop until it is online."
    else:
        status = Status.CRITICAL
        hint = "Check the cluster in the DigitalOcean control panel."
    last = facts.get("last_failover")
    failover = (
        f"; last failover {last['age_seconds'] / 60:.0f} min ago" if last else "; no failover"
    )
    return [
        Check(
            "digitalocean",
            status,
            f"DigitalOcean cluster {facts.get('name') or facts.get('cluster')}: {state}, "
            f"{nodes} node{'s' if nodes != 1 else ''}{failover}",
            value=state,
            hint=hint,
        )
    ]
