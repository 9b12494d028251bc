"""The 503 answer to a database outage: pure helpers, no database access.

:func:`unavailable_response` builds every 503 the package sends, from the
middleware and from the webhook views alike: the HTML page for browsers, JSON
for API clients and webhook senders, always with the same ``Retry-After`` and
never-cache headers. It never touches the database (no request context
processors, no session, no user), so it works in the middle of the outage it
reports.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.utils import translation
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.utils.html import escape
from django.utils.translation import gettext

from django_pg_resilience import conf
from django_pg_resilience.errors import causes, is_busy

__all__ = [
    "BARE_503_ATTRIBUTE",
    "PASSTHROUGH_ATTRIBUTE",
    "POOL_TIMEOUT_RETRY_AFTER",
    "TEMPLATE_NAME",
    "ResponseKind",
    "is_busy_error",
    "is_pool_timeout",
    "response_kind",
    "retry_after_for",
    "unavailable_response",
    "wants_json",
]

logger = logging.getLogger("django_pg_resilience.middleware")

#: The page's template; a project overrides it by providing the same name.
TEMPLATE_NAME = "django_pg_resilience/unavailable.html"

#: A view function with this attribute set to True gets the webhook 503 (JSON
#: with the error code, never the HTML page): webhook senders retry.
BARE_503_ATTRIBUTE = "pg_resilience_bare_503"
#: A view function with this attribute set to True is left alone (health endpoints report).
PASSTHROUGH_ATTRIBUTE = "pg_resilience_passthrough"

#: Retry-After, in seconds, when the database or its pool was busy (53300, a
#: PgBouncer limit, psycopg_pool's PoolTimeout): load, not an outage, so the
#: client may come back at once.
POOL_TIMEOUT_RETRY_AFTER = 1

#: The error code of the JSON 503s.
UNAVAILABLE_CODE = "database_unavailable"
POOL_BUSY_CODE = "database_busy"

ResponseKind = Literal["html", "json", "webhook"]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# Served when the template itself cannot be rendered (a broken override, a
# missing app): the outage must still get a 503, never a 500.
_FALLBACK_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8>"
    "<meta name=viewport content='width=device-width,initial-scale=1'>"
    "<title>{title}</title>{refresh}</head>"
    "<body style='font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em'>"
    "<h1>{heading}</h1><p>{message}</p></body></html>"
)


def is_busy_error(error: BaseException | None) -> bool:
    """True when ``error`` means the database is up but full (see :func:`errors.is_busy`)."""
    return error is not None and is_busy(error)


def is_pool_timeout(error: BaseException | None) -> bool:
    """True when ``error`` is, or wraps, psycopg_pool's ``PoolTimeout`` (a busy pool)."""
    from psycopg_pool import PoolTimeout

    return any(isinstance(cause, PoolTimeout) for cause in causes(error))


def retry_after_for(error: BaseException | None) -> int:
    """Seconds for ``Retry-After``: the breaker's next probe when known, else the setting.

    Looks for a ``retry_after`` attribute (set by :class:`~.errors.DatabaseUnavailable`)
    on ``error`` and the errors it wraps; a busy pool gets
    :data:`POOL_TIMEOUT_RETRY_AFTER`. Rounded up, never below 1.
    """
    if is_busy_error(error):
        return POOL_TIMEOUT_RETRY_AFTER
    for cause in causes(error):
        value = getattr(cause, "retry_after", None)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return max(1, math.ceil(value))
    return max(1, conf.app_settings().RETRY_AFTER)


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value.strip())))
            except ValueError:
                return 0.0
    return 1.0


def wants_json(accept: str) -> bool:
    """True when the ``Accept`` header prefers JSON to HTML.

    Only media types named explicitly count (``application/json`` or any
    ``+json`` type against ``text/html`` / ``application/xhtml+xml``), so a
    browser's ``*/*`` and a bare ``*/*`` both get the page; a tie goes to HTML.
    """
    best_json = best_html = 0.0
    for part in accept.split(","):
        media_type, *params = part.split(";")
        media_type = media_type.strip().lower()
        quality = _quality(params)
        if media_type == "application/json" or media_type.endswith("+json"):
            best_json = max(best_json, quality)
        elif media_type in ("text/html", "application/xhtml+xml"):
            best_html = max(best_html, quality)
    return best_json > best_html


def response_kind(request: HttpRequest, *, bare: bool = False) -> ResponseKind:
    """Which 503 ``request`` gets: ``webhook`` for webhooks, ``json`` for APIs, else ``html``."""
    if bare:
        return "webhook"
    prefixes = conf.app_settings().JSON_PATH_PREFIXES
    if prefixes and request.path_info.startswith(tuple(prefixes)):
        return "json"
    if wants_json(request.headers.get("Accept", "")):
        return "json"
    return "html"


def _page(request: HttpRequest, retry_after: int, message: str = "") -> str:
    unsafe = request.method not in _SAFE_METHODS
    context = {
        "retry_after": retry_after,
        "unsafe_method": unsafe,
        "method": request.method,
        "message": message,
    }
    language = (
        translation.get_language_from_request(request, check_path=False)
        if settings.USE_I18N
        else settings.LANGUAGE_CODE
    )
    with translation.override(language):
        try:
            # No request: no context processors, so nothing reads the session,
            # the user or the database while rendering.
            return get_template(TEMPLATE_NAME).render(context)
        except Exception as exc:
            level = logging.WARNING if isinstance(exc, TemplateDoesNotExist) else logging.ERROR
            logger.log(
                level,
                "Could not render %s (%s); sent the built-in page instead.",
                TEMPLATE_NAME,
                type(exc).__name__,
                exc_info=level == logging.ERROR,
            )
            return _fallback_page(retry_after, unsafe, message)


def _fallback_page(retry_after: int, unsafe: bool, extra: str = "") -> str:
    if unsafe:
        message = gettext("Your action was not completed. It is safe to repeat it in a moment.")
        refresh = ""
    else:
        message = gettext("This page will reload by itself in a moment.")
        refresh = f"<meta http-equiv=refresh content={int(retry_after)}>"
    return _FALLBACK_PAGE.format(
        refresh=refresh,
        title=escape(gettext("Temporarily unavailable")),
        heading=escape(gettext("We'll be right back")),
        message=escape(f"{extra} {message}" if extra else message),
    )


def unavailable_response(
    request: HttpRequest,
    error: BaseException | None = None,
    *,
    bare: bool = False,
    code: str | None = None,
    message: str = "",
) -> HttpResponse:
    """The 503 for ``request`` during an outage (``error`` is the availability error).

    Status 503, ``Retry-After`` (see :func:`retry_after_for`), Django's
    never-cache headers (``Cache-Control`` includes ``no-store``) and
    ``Vary: Accept``. The body depends on :func:`response_kind`: the page, or
    ``{"error": code, "retry_after": seconds}`` for APIs and webhooks (``code``
    says why: ``database_unavailable``, ``database_busy``, or a webhook
    view's own reason such as ``durable_ack_unconfirmed``). ``message`` (planned
    maintenance's own words) is shown on the page and added to the JSON.
    """
    retry_after = retry_after_for(error)
    kind = response_kind(request, bare=bare)
    if code is None:
        code = POOL_BUSY_CODE if is_busy_error(error) else UNAVAILABLE_CODE
    response: HttpResponse
    if kind in ("json", "webhook"):
        body: dict[str, object] = {"error": code, "retry_after": retry_after}
        if message:
            body["message"] = message
        response = JsonResponse(body, status=503)
    else:
        response = HttpResponse(_page(request, retry_after, message), status=503)
    response["Retry-After"] = str(retry_after)
    add_never_cache_headers(response)
    patch_vary_headers(response, ["Accept"])
    return response
