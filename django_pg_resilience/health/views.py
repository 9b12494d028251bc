"""``healthz`` (liveness), ``readyz`` (readiness) and ``cluster_health`` for probes and monitors.

* ``healthz`` answers 200 while the process answers; it touches no database.
* ``readyz`` answers for this process (started, settings and migration files
  sane, not shutting down): 200 or 503. The database's state is in the answer
  (``"database"``) but only turns it into a 503 for the checks named in
  ``PG_RESILIENCE['READINESS_ENFORCE']``; see :mod:`.readiness` for why.
* ``cluster_health`` (``/healthz/cluster``) is the cluster report of
  ``manage.py health`` in its JSON schema: 200 when OK or WARNING, 503 when
  CRITICAL or UNKNOWN. It is for monitors, not for load balancers.

The cluster report comes from the per-process cache (:mod:`.cache`): any
number of requests cost at most one probe round per ``HEALTH_CACHE_SECONDS``.
Details (nodes, hosts, lag, messages) are shown only to a request whose
``X-Health-Token`` header matches ``PG_RESILIENCE['HEALTH_TOKEN']``; everyone
else sees statuses alone and waits for a probe round only while there has
never been one.
The views are marked with ``PASSTHROUGH_ATTRIBUTE`` so the 503 middleware
leaves their answers as they are: they report, they do not apologise.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timezone
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from django_pg_resilience.conf import app_settings
from django_pg_resilience.health.cache import CachedReport, cluster_report
from django_pg_resilience.health.readiness import enforced_checks, process_checks
from django_pg_resilience.health.report import SCHEMA_VERSION
from django_pg_resilience.health.status import Status, worst
from django_pg_resilience.unavailable import PASSTHROUGH_ATTRIBUTE

__all__ = ["TOKEN_HEADER", "cluster_health", "healthz", "readyz"]

TOKEN_HEADER = "X-Health-Token"  # noqa: S105 (a header name)
_FAILING = (Status.CRITICAL, Status.UNKNOWN)


def _token_matches(request: HttpRequest) -> bool:
    try:
        expected = app_settings().HEALTH_TOKEN
    except ImproperlyConfigured:
        return False
    given = request.headers.get(TOKEN_HEADER)
    if not expected or given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _cached(wait: float | None) -> CachedReport:
    try:
        return cluster_report(wait)
    except ImproperlyConfigured as exc:
        return CachedReport(None, f"configuration error: {exc}")


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches no database."""
    return JsonResponse({"status": "OK"})


@require_safe
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness of this process; the database is reported, enforced only when configured."""
    detailed = _token_matches(request)
    checks = process_checks()
    try:
        enforce = app_settings().READINESS_ENFORCE
    except ImproperlyConfigured:
        enforce = ()
    # Only an enforced check or a token holder waits for a probe round; the
    # others get the report of an earlier round (or none yet) at once.
    cached = _cached(None if enforce or detailed else 0.0)
    checks += enforced_checks(enforce, cached)
    status = worst(check.status for check in checks)
    ready = status not in _FAILING
    database = cached.report.status.name if cached.report is not None else Status.UNKNOWN.name
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": status.name,
        "ready": ready,
        "database": database,
        "checked_at": _now(),
    }
    if detailed:
        data["checks"] = [check.as_dict() for check in checks]
        data["enforced"] = sorted(enforce)
        data["cluster"] = _cluster_body(cached, detailed=True)
    return JsonResponse(data, status=200 if ready else 503)


@require_safe
@never_cache
def cluster_health(request: HttpRequest) -> JsonResponse:
    """The cluster report (``manage.py health``'s JSON); 503 when CRITICAL or UNKNOWN."""
    detailed = _token_matches(request)
    # An anonymous caller waits for a round only when there has never been one.
    cached = _cached(None if detailed else 0.0)
    if cached.report is None and cached.error is None and not detailed:
        cached = _cached(None)
    body = _cluster_body(cached, detailed=detailed)
    return JsonResponse(body, status=503 if body["status"] in ("CRITICAL", "UNKNOWN") else 200)


def _cluster_body(cached: CachedReport, *, detailed: bool) -> dict[str, Any]:
    if cached.report is None:
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "status": Status.UNKNOWN.name,
            "exit_code": int(Status.UNKNOWN),
            "checked_at": _now(),
        }
        if detailed:
            data["summary"] = cached.error or "no cluster report yet: the first round is running"
        return data
    data = cached.report.as_dict(detailed=detailed)
    if detailed:
        data["age_seconds"] = round(cached.age_seconds or 0.0, 3)
        if cached.error:
            data["error"] = cached.error
    return data


for _view in (healthz, readyz, cluster_health):
    setattr(_view, PASSTHROUGH_ATTRIBUTE, True)
