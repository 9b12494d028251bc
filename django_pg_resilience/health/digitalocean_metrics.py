"""The database nodes' CPU, memory and disk utilisation, from DigitalOcean's metrics endpoints.

PostgreSQL cannot say how busy its machine is; the provider can. The cluster
object (``GET /v2/databases/{uuid}``) lists ``metrics_endpoints``
(``[{"host": ..., "port": ...}]``), each serving Prometheus text at
``https://host:port/metrics`` behind HTTP basic auth with the account-wide
credentials of ``GET /v2/databases/metrics/credentials``
(``{"credentials": {"basic_auth_username": ..., "basic_auth_password": ...}}``).

The series read are Telegraf's (what the endpoints serve): CPU busy is
``100 - cpu_usage_idle{cpu="cpu-total"}``, memory ``mem_used_percent`` (or
``100 - mem_available_percent``), disk the fullest ``disk_used_percent``.

The credentials go only over verified https (``DIGITALOCEAN_METRICS_CA`` names
the CA file when the endpoints' certificate is not in the system store), never
to a redirect, and never into a message: every failure is reported without them.
"""

from __future__ import annotations

import base64
import json
import math
import re
import ssl
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django_pg_resilience.health.digitalocean_http import (
    TOKEN_ENV,
    DigitalOceanError,
    RefuseRedirects,
    fetch,
)
from django_pg_resilience.health.evaluate import Check, _graded
from django_pg_resilience.health.status import Status, worst

__all__ = [
    "CREDENTIALS_PATH",
    "NodeThresholds",
    "evaluate_nodes",
    "fetch_node_metrics",
    "parse_prometheus_text",
    "utilisation",
]

CREDENTIALS_PATH = "/v2/databases/metrics/credentials"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
Sample = tuple[str, dict[str, str], float]
#: (name, warning, critical) per resource; ratios (0.8 = 80 %).
NodeThresholds = Mapping[str, tuple[float, float]]
RESOURCES = ("cpu", "memory", "disk")


class _RefuseMetricsRedirects(RefuseRedirects):
    where = "the cluster's metrics_endpoints"


def parse_prometheus_text(text: str) -> list[Sample]:
    """(name, labels, value) of every sample in Prometheus text exposition format."""
    samples: list[Sample] = []
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match is None or line.lstrip().startswith("#"):
            continue
        name, label_text, value_text = match.groups()
        try:
            value = float(value_text)
        except ValueError:
            continue
        labels = {key: val.replace('\\"', '"') for key, val in _LABEL.findall(label_text or "")}
        samples.append((name, labels, value))
    return samples


def utilisation(samples: list[Sample]) -> dict[str, float | None]:
    """CPU, memory and disk use as ratios (None when the endpoint does not serve the series)."""

    def first(name: str, where: Callable[[dict[str, str]], bool] = lambda _: True) -> float | None:
        return next((v for n, labels, v in samples if n == name and where(labels)), None)

    idle = first("cpu_usage_idle", lambda labels: labels.get("cpu") == "cpu-total")
    used = first("mem_used_percent")
    available = first("mem_available_percent")
    if used is None and available is not None:
        used = 100 - available
    disks = [v for n, _, v in samples if n == "disk_used_percent"]
    percents = {
        "cpu": None if idle is None else 100 - idle,
        "memory": used,
        "disk": max(disks) if disks else None,
    }
    return {key: None if v is None else round(v / 100, 4) for key, v in percents.items()}


def _host_label(samples: list[Sample]) -> str | None:
    return next((labels["host"] for _, labels, _ in samples if labels.get("host")), None)


def _context(ca_file: str | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise DigitalOceanError(
            f"cannot load PG_RESILIENCE['DIGITALOCEAN_METRICS_CA'] ({exc.__class__.__name__}): "
            "name a PEM file of the CA that signed the metrics endpoints' certificate"
        ) from None


def _credentials(base_url: str, token: str, timeout: float) -> str:
    """The ``Authorization`` header value for the metrics endpoints (never shown)."""
    request = urllib.request.Request(  # noqa: S310 (scheme checked by check_api_url)
        base_url.rstrip("/") + CREDENTIALS_PATH,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    body = fetch(
        request,
        timeout,
        {
            401: f"the API refused the token for the metrics credentials (401): check {TOKEN_ENV}",
            403: "the token may not read the metrics credentials (403 Forbidden): give it "
            "the database read scope",
        },
        kind="metrics_credentials",
    )
    try:
        credentials = json.loads(body)["credentials"]
        user = str(credentials["basic_auth_username"])
        password = str(credentials["basic_auth_password"])
    except (ValueError, KeyError, TypeError):
        raise DigitalOceanError(
            "the API's metrics credentials answer has no credentials.basic_auth_username "
            "and basic_auth_password"
        ) from None
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _secrets_of(authorization: str) -> list[str]:
    user, _, password = base64.b64decode(authorization.split()[1]).decode().partition(":")
    return [secret for secret in (password, user, authorization.split()[1]) if len(secret) >= 4]


def _read_endpoint(
    endpoint: Mapping[str, Any], authorization: str, context: ssl.SSLContext, timeout: float
) -> dict[str, Any]:
    host, port = str(endpoint.get("host") or ""), endpoint.get("port")
    address = f"{host}:{port}"
    facts: dict[str, Any] = {"endpoint": address, "node": host, "error": None}
    if not host or not isinstance(port, int):
        facts["error"] = f"the API listed a metrics endpoint without host and port: {address}"
        return facts
    request = urllib.request.Request(
        f"https://{host}:{port}/metrics", headers={"Authorization": authorization}
    )
    try:
        body = fetch(
            request,
            timeout,
            {
                401: f"{address} refused the metrics credentials (401): reset them with "
                f"PUT {CREDENTIALS_PATH} or check the token's account"
            },
            kind="node_metrics",
            context=context,
            redirects=_RefuseMetricsRedirects,
        )
    except DigitalOceanError as exc:
        facts["error"] = str(exc)
        return facts
    samples = parse_prometheus_text(body.decode("utf-8", "replace"))
    facts["node"] = _host_label(samples) or host
    ratios = utilisation(samples)
    # NaN and infinity are no JSON: kept as None, and said which (graded UNKNOWN).
    invalid = {key: str(v) for key, v in ratios.items() if v is not None and not math.isfinite(v)}
    if invalid:
        facts["invalid"] = invalid
    facts.update({f"{key}_ratio": None if key in invalid else v for key, v in ratios.items()})
    if all(ratios[key] is None for key in RESOURCES):
        facts["error"] = f"{address} serves none of the CPU, memory or disk series"
    return facts


def fetch_node_metrics(
    endpoints: list[Any], *, base_url: str, token: str, timeout: float, ca_file: str | None
) -> list[dict[str, Any]]:
    """One dict per metrics endpoint: node name, ``cpu_ratio``, ``memory_ratio``,
    ``disk_ratio`` or ``error``. Raises DigitalOceanError when no endpoint can be asked."""
    context = _context(ca_file)
    authorization = _credentials(base_url, token, timeout)
    listed = [e for e in endpoints if isinstance(e, Mapping)]
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(listed)))) as pool:
        nodes = list(pool.map(lambda e: _read_endpoint(e, authorization, context, timeout), listed))
    secrets = _secrets_of(authorization)
    for node in nodes:
        if node["error"]:
            for secret in secrets:
                node["error"] = node["error"].replace(secret, "********")
    return nodes


def evaluate_nodes(nodes: list[dict[str, Any]], thresholds: NodeThresholds) -> list[Check]:
    """One check per node: the worst of its CPU, memory and disk against the thresholds.

    A value that is not a number (NaN, infinite: an endpoint that lost its
    counters) is UNKNOWN, never OK: nothing was measured.
    """
    checks = []
    for node in nodes:
        name = node["node"]
        if node.get("error"):
            checks.append(
                Check(
                    "digitalocean_node",
                    Status.UNKNOWN,
                    f"DigitalOcean node {name}: {node['error']}",
                    subject=name,
                )
            )
            continue
        graded = [
            (resource, *_grade(node, resource, thresholds))
            for resource in RESOURCES
            if node.get(f"{resource}_ratio") is not None or resource in node.get("invalid", {})
        ]
        status = worst(status for _, status, _ in graded)
        checks.append(
            Check(
                "digitalocean_node",
                status,
                f"DigitalOcean node {name}: " + ", ".join(part for _, _, part in graded),
                value={r: node.get(f"{r}_ratio") for r in RESOURCES},
                subject=name,
                hint=_node_hint([(r, s) for r, s, _ in graded]),
            )
        )
    return checks


def _grade(
    node: Mapping[str, Any], resource: str, thresholds: NodeThresholds
) -> tuple[Status, str]:
    """(status, text) of one resource of a node."""
    ratio = node.get(f"{resource}_ratio")
    if ratio is None or not math.isfinite(ratio):
        shown = node.get("invalid", {}).get(resource) or str(ratio)
        return Status.UNKNOWN, f"{resource} {shown}: not a usable value"
    warning, critical = thresholds[resource]
    status = _graded(ratio, warning, critical)
    crossed = critical if status is Status.CRITICAL else warning
    limit = "" if status is Status.OK else f" (over {crossed:.0%})"
    return status, f"{resource} {ratio:.0%}{limit}"


def _node_hint(graded: list[tuple[str, Status]]) -> str | None:
    if any(status is Status.UNKNOWN for _, status in graded):
        return (
            "The node's metrics endpoint serves a value that is not a number: check the "
            "node in the DigitalOcean control panel."
        )
    busy = [resource for resource, status in graded if status is not Status.OK]
    if not busy:
        return None
    return (
        f"The node's {' and '.join(busy)} {'is' if len(busy) == 1 else 'are'} near capacity, "
        "which slows a failover: resize the cluster or find the load."
    )
