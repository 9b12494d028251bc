"""The 503 middleware's checks (W201, W202)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, register

# --- middleware checks ---
# W201: DatabaseUnavailableMiddleware is not first in MIDDLEWARE.
# W202: the 503 page's template cannot be loaded (a built-in page is sent instead).

_UNAVAILABLE_MIDDLEWARE = "django_pg_resilience.middleware.DatabaseUnavailableMiddleware"
# Middleware that never reads the database may come first (security headers,
# static files, CORS, compression): nothing they do can raise an outage error.
_DATABASE_FREE_MIDDLEWARE = frozenset(
    {
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.gzip.GZipMiddleware",
        "django.middleware.http.ConditionalGetMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "corsheaders.middleware.CorsMiddleware",
    }
)


@register()
def check_unavailable_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.conf import settings
    from django.core.checks import Warning
    from django.template import TemplateDoesNotExist, TemplateSyntaxError
    from django.template.loader import get_template

    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if _UNAVAILABLE_MIDDLEWARE not in middleware:
        return []
    messages: list[CheckMessage] = []
    before = [
        path
        for path in middleware[: middleware.index(_UNAVAILABLE_MIDDLEWARE)]
        if path not in _DATABASE_FREE_MIDDLEWARE
    ]
    if before:
        messages.append(
            Warning(
                f"{_UNAVAILABLE_MIDDLEWARE} comes after {', '.join(before)} in MIDDLEWARE, "
                "so a database outage raised there becomes a 500, not the 503 page.",
                hint=f"Move {_UNAVAILABLE_MIDDLEWARE} to the top of MIDDLEWARE.",
                id="pg_resilience.W201",
            )
        )
    from django_pg_resilience.unavailable import TEMPLATE_NAME

    try:
        get_template(TEMPLATE_NAME)
    except (TemplateDoesNotExist, TemplateSyntaxError) as exc:
        messages.append(
            Warning(
                f"The 503 page's template {TEMPLATE_NAME} cannot be "
                f"loaded ({type(exc).__name__}); a plain built-in page is sent instead.",
                hint="Add 'django_pg_resilience' to INSTALLED_APPS with APP_DIRS=True in "
                f"TEMPLATES, or provide your own {TEMPLATE_NAME}.",
                id="pg_resilience.W202",
            )
        )
    return messages
