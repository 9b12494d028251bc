"""``healthz`` (liveness) and ``readyz`` (readiness) for load balancers and orchestrators.

``readyz`` runs the same checks as ``manage.py health`` and answers in the same
JSON schema: 200 when OK or WARNING, 503 when CRITICAL or UNKNOWN. The details
(nodes, hosts, lag) are shown only to a request whose ``X-Health-Token`` header
matches ``PG_RESILIENCE['HEALTH_TOKEN']``; everyone else sees the status alone.
Both views are marked ``pg_resilience_passthrough`` so the 503 middleware
leaves their answers as they are: they report, they do not apologise.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timezone

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from django_pg_resilience.conf import app_settings
from django_pg_resilience.health.report import SCHEMA_VERSION, run_checks
from django_pg_resilience.health.status import Status

__all__ = ["TOKEN_HEADER", "healthz", "readyz"]

TOKEN_HEADER = "X-Health-Token"  # noqa: S105 (a header name)
_READY = (Status.OK, Status.WARNING)


def _token_matches(request: HttpRequest) -> bool:
    expected = app_settings().HEALTH_TOKEN
    given = request.headers.get(TOKEN_HEADER)
    if not expected or given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches no database."""
    return JsonResponse({"status": "OK"})


@require_safe
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database checks of ``manage.py health``; 503 when CRITICAL or UNKNOWN."""
    detailed = _token_matches(request)
    try:
        report = run_checks()
    except ImproperlyConfigured as exc:
        data: dict[str, object] = {
            "schema_version": SCHEMA_VERSION,
            "status": Status.UNKNOWN.name,
            "exit_code": int(Status.UNKNOWN),
            "checked_at": datetime.now(timezone.utc).isoformat(),
        }
        if detailed:
            data["summary"] = f"configuration error: {exc}"
        return JsonResponse(data, status=503)
    status = 200 if report.status in _READY else 503
    return JsonResponse(report.as_dict(detailed=detailed), status=status)


healthz.pg_resilience_passthrough = True  # type: ignore[attr-defined]
readyz.pg_resilience_passthrough = True  # type: ignore[attr-defined]
