"""The DigitalOcean Managed Databases view: cluster status, node count, last failover.

Two calls of the public API (``GET /v2/databases/{uuid}`` and
``GET /v2/databases/{uuid}/events``) with a Bearer token read from the
``DIGITALOCEAN_TOKEN`` environment variable; then the nodes' CPU, memory and
disk utilisation from the cluster's metrics endpoints (see
:mod:`.digitalocean_metrics`). The token never appears in any
message; every failure becomes an UNKNOWN check that says what to fix. The
token is only sent over https (plain http is allowed for a loopback test
server) and never to another address: redirects are refused, because urllib
would forward the ``Authorization`` header to wherever they point.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from django_pg_resilience.health.evaluate import Check
from django_pg_resilience.health.status import Status

__all__ = [
    "TOKEN_ENV",
    "DigitalOceanError",
    "check_api_url",
    "check_cluster",
    "check_token",
    "fetch_cluster",
]

TOKEN_ENV = "DIGITALOCEAN_TOKEN"  # noqa: S105 (a variable name)
_BUSY_STATES = ("creating", "resizing", "migrating", "forking")
_FAILOVER_EVENT = "cluster_master_promotion"


class DigitalOceanError(Exception):
    """The API could not be asked or did not answer usefully (message safe to show)."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    #: What to check when an address answers with a redirect.
    where = "PG_RESILIENCE['DIGITALOCEAN_API_URL']"

    def redirect_request(self, req: Any, fp: Any, code: int, *args: Any) -> None:
        fp.close()
        raise DigitalOceanError(
            f"{req.host} answered {code} with a redirect; redirects are refused so the "
            f"credentials are never sent to another address: check {self.where}"
        )


def api_opener() -> urllib.request.OpenerDirector:
    """An opener that refuses redirects, with the system's CAs as they are now.

    Built per call: since Python 3.12 an HTTPS handler makes its TLS context
    when it is created, so one built at import would miss a CA bundle
    (``SSL_CERT_FILE``) set afterwards. A round of checks makes two requests.
    """
    return urllib.request.build_opener(
        _RefuseRedirects, urllib.request.HTTPSHandler(context=ssl.create_default_context())
    )


def fetch(
    opener: urllib.request.OpenerDirector,
    request: urllib.request.Request,
    timeout: float,
    explain: dict[int, str],
) -> bytes:
    """The body of ``request``'s answer; any failure a DigitalOceanError safe to show
    (``explain`` maps an HTTP status to what to fix)."""
    base_url = f"{request.type}://{request.host}"
    try:
        with opener.open(request, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        if exc.code in explain:
            raise DigitalOceanError(explain[exc.code]) from None
        raise DigitalOceanError(
            f"{base_url} answered {exc.code} {exc.reason} for {request.selector}"
        ) from None
    except TimeoutError:
        raise DigitalOceanError(f"no answer from {base_url} within {timeout:g} s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise DigitalOceanError(f"no answer from {base_url} within {timeout:g} s") from None
        raise DigitalOceanError(f"cannot reach {base_url}: {exc.reason}") from None
    except OSError as exc:
        raise DigitalOceanError(f"cannot read from {base_url}: {exc.__class__.__name__}") from None
    except (DigitalOceanError, KeyboardInterrupt):
        raise
    except Exception as exc:  # e.g. http.client's ValueError, which quotes the header
        raise DigitalOceanError(
            f"cannot ask {base_url}: {exc.__class__.__name__} (details withheld: they may "
            "quote the credentials)"
        ) from None


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_url(base_url: str) -> None:
    """Raise unless ``base_url`` is https, or http to a loopback address (a test server)."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return
    raise DigitalOceanError(
        "PG_RESILIENCE['DIGITALOCEAN_API_URL'] must start with https:// (plain http only "
        f"to a loopback test server); it starts with {parts.scheme or 'no scheme'!r}"
    )


def check_token(token: str) -> None:
    """Raise unless ``token`` could be a token: printable ASCII, no space or line break."""
    if not all("!" <= char <= "~" for char in token):
        raise DigitalOceanError(
            f"{TOKEN_ENV} contains a space, a line break or another character no token has: "
            "set it again from the token shown once in the DigitalOcean control panel"
        )


_API_ERRORS = {
    401: f"the API refused the token (401 Unauthorized): check {TOKEN_ENV} "
    "(a read-scoped token for databases)",
    404: "no such database cluster (404 Not Found): check the cluster UUID "
    "(--do-cluster or PG_RESILIENCE['DIGITALOCEAN_CLUSTER'])",
}


def _get(base_url: str, path: str, token: str, timeout: float) -> Any:
    url = base_url.rstrip("/") + path
    request = urllib.request.Request(  # noqa: S310 (scheme checked by check_api_url)
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    body = fetch(api_opener(), request, timeout, _API_ERRORS)
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
    data = _get(base_url, f"/v2/databases/{quoted}", token, timeout)
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise DigitalOceanError("the API's answer has no 'database' object")
    events_data = _get(base_url, f"/v2/databases/{quoted}/events", token, timeout)
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


def check_cluster(
    cluster: str | None,
    *,
    base_url: str,
    timeout: float,
    node_thresholds: Mapping[str, tuple[float, float]] | None = None,
    metrics_ca: str | None = None,
) -> tuple[dict[str, Any], list[Check]]:
    """The DigitalOcean facts and checks; never raises for API trouble.

    With ``node_thresholds`` (``{"cpu"|"memory"|"disk": (warning, critical)}``)
    the nodes' utilisation is read from the cluster's metrics endpoints too.
    """
    facts: dict[str, Any] = {"cluster": cluster, "error": None}
    token = os.environ.get(TOKEN_ENV, "").strip()
    problem: str | None = None
    if not cluster:
        problem = (
            "no cluster UUID: pass --do-cluster UUID or set PG_RESILIENCE['DIGITALOCEAN_CLUSTER']"
        )
    elif not token:
        problem = f"no API token: set the {TOKEN_ENV} environment variable"
    else:
        try:
            facts = {
                **fetch_cluster(cluster, base_url=base_url, token=token, timeout=timeout),
                "error": None,
            }
        except DigitalOceanError as exc:
            problem = str(exc)
        except Exception as exc:  # a bug must not print a traceback that quotes the token
            problem = f"the check failed: {exc.__class__.__name__}"
        if problem is not None:
            problem = _scrub(problem, token)
    if problem is not None:
        facts["error"] = problem
        return facts, [Check("digitalocean", Status.UNKNOWN, f"DigitalOcean: {problem}")]
    checks = _status_checks(facts)
    if node_thresholds is not None and facts["metrics_endpoints"]:
        checks += _node_checks(facts, base_url, token, timeout, node_thresholds, metrics_ca)
    return facts, checks


def _node_checks(
    facts: dict[str, Any],
    base_url: str,
    token: str,
    timeout: float,
    thresholds: Mapping[str, tuple[float, float]],
    ca_file: str | None,
) -> list[Check]:
    from django_pg_resilience.health.digitalocean_metrics import (
        evaluate_nodes,
        fetch_node_metrics,
    )

    try:
        facts["nodes"] = fetch_node_metrics(
            facts["metrics_endpoints"],
            base_url=base_url,
            token=token,
            timeout=timeout,
            ca_file=ca_file,
        )
    except DigitalOceanError as exc:
        problem = _scrub(str(exc), token)
    except Exception as exc:  # a bug must not print a traceback that quotes a secret
        problem = f"the node metrics check failed: {exc.__class__.__name__}"
    else:
        return evaluate_nodes(facts["nodes"], thresholds)
    facts["nodes_error"] = problem
    return [Check("digitalocean_node", Status.UNKNOWN, f"DigitalOcean node metrics: {problem}")]


def _scrub(text: str, token: str) -> str:
    """``text`` without the token or any line of it (a token with a line break)."""
    for secret in (token, *token.splitlines()):
        if len(secret.strip()) >= 4:
            text = text.replace(secret.strip(), "********")
    return text


def _status_checks(facts: dict[str, Any]) -> list[Check]:
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
