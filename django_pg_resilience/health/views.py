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
Details (nodes, hosts, lag, messages) are shown only to a request that
presents ``PG_RESILIENCE['HEALTH_TOKEN']`` (:mod:`.access`); everyone else sees
statuses alone, only ever reads the cache, and waits for the shared round only
while there is no current report. A token holder may add ``?fresh=1`` to get a
report at most a second old (still one round at a time).
The views are marked with ``PASSTHROUGH_ATTRIBUTE`` so the 503 middleware
leaves their answers as they are: they report, they do not apologise.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from django_pg_resilience.conf import app_settings
from django_pg_resilience.health.access import TOKEN_HEADER, token_matches, token_presented
from django_pg_resilience.health.cache import CachedReport, cluster_report
from django_pg_resilience.health.readiness import enforced_checks, process_checks
from django_pg_resilience.health.report import SCHEMA_VERSION
from django_pg_resilience.health.status import Status, worst
from django_pg_resilience.unavailable import PASSTHROUGH_ATTRIBUTE

__all__ = ["TOKEN_HEADER", "cluster_health", "healthz", "readyz"]

_FAILING = (Status.CRITICAL, Status.UNKNOWN)


def _token_matches(request: HttpRequest) -> bool:
    return token_matches(token_presented(request.headers.get))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _cached(*, waits: bool, fresh: bool = False, unless_current: bool = False) -> CachedReport:
    """The cached report. ``waits``: for a running round; ``unless_current``: only while
    there is no current report (none yet, or an expired one)."""
    try:
        cached = cluster_report(None if waits else 0.0, fresh=fresh)
        if unless_current and not waits and cached.current is None and not cached.error:
            cached = cluster_report(None)
        return cached
    except ImproperlyConfigured as exc:
        return CachedReport(None, f"configuration error: {exc}")


def _wants_fresh(request: HttpRequest, detailed: bool) -> bool:
    return detailed and request.GET.get("fresh") in ("1", "true", "yes")


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
    # others get the report of an earlier round at once.
    cached = _cached(waits=bool(enforce or detailed), fresh=_wants_fresh(request, detailed))
    checks += enforced_checks(enforce, cached)
    status = worst(check.status for check in checks)
    ready = status not in _FAILING
    database = cached.status.name
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
    cached = _cached(waits=detailed, fresh=_wants_fresh(request, detailed), unless_current=True)
    body = _cluster_body(cached, detailed=detailed)
    return JsonResponse(body, status=503 if body["status"] in ("CRITICAL", "UNKNOWN") else 200)


def _cluster_body(cached: CachedReport, *, detailed: bool) -> dict[str, Any]:
    if cached.report is None or (cached.expired and not detailed):
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "status": Status.UNKNOWN.name,
            "exit_code": int(Status.UNKNOWN),
            "checked_at": _now() if cached.report is None else cached.report.checked_at.isoformat(),
        }
        if detailed:
            data["summary"] = cached.why_unknown
        return data
    data = cached.report.as_dict(detailed=detailed)
    if detailed:
        data["age_seconds"] = round(cached.age_seconds or 0.0, 3)
        data["stale"] = cached.stale or cached.expired
        if cached.error:
            data["error"] = cached.error
        if cached.expired:
            # The old report stays readable, but its status no longer counts.
            data.update(
                status=Status.UNKNOWN.name,
                exit_code=int(Status.UNKNOWN),
                summary=cached.why_unknown,
            )
    return data


for _view in (healthz, readyz, cluster_health):
    setattr(_view, PASSTHROUGH_ATTRIBUTE, True)
