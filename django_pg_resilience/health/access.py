"""Who may see the details: a caller that presents ``PG_RESILIENCE['HEALTH_TOKEN']``.

The token comes in the ``X-Health-Token`` header, or as ``Authorization: Bearer
<token>`` (what Prometheus sends with ``authorization: {credentials: ...}`` in a
scrape config), and is compared in constant time. With no token configured,
nobody sees details.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured

from django_pg_resilience.conf import app_settings

__all__ = [
    "METRICS_NAMES_MODES",
    "TOKEN_HEADER",
    "metrics_names_shown",
    "token_matches",
    "token_presented",
]

TOKEN_HEADER = "X-Health-Token"  # noqa: S105 (a header name)
#: The values of HEALTH_METRICS_NAMES.
METRICS_NAMES_MODES = ("token", "always", "never")


def token_presented(header: Callable[[str], str | None]) -> str | None:
    """The token a request presents; ``header(name)`` reads one of its headers."""
    given = header(TOKEN_HEADER)
    if given is not None:
        return given
    scheme, _, credentials = (header("Authorization") or "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def token_matches(given: str | None) -> bool:
    """``given`` is the configured HEALTH_TOKEN (never true when none is configured)."""
    try:
        expected = app_settings().HEALTH_TOKEN
    except ImproperlyConfigured:
        return False
    if not expected or given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def metrics_names_shown(token_given: bool) -> bool:
    """Whether /metrics shows names (hosts, slots, the cluster UUID) to this scrape."""
    try:
        mode = app_settings().HEALTH_METRICS_NAMES
    except ImproperlyConfigured:
        return False
    if mode == "always":
        return True
    if mode == "token":
        return token_given
    return False  # "never", or a value the system check reports (E406): names stay hidden
