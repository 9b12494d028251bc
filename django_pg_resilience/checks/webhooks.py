"""The webhook views' checks (E301-E305, W301); the rules live in webhooks/checks.py."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, register

# --- webhook checks ---
# E301 no secret, E302 no handle(), E303 bad Standard Webhooks secret, E304 no verifier,
# E305 unknown durable_ack_standby alias, W301 WEBHOOK_MAX_BODY_SIZE above Django's own limit.
# The rules live in django_pg_resilience/webhooks/checks.py.


@register("urls")
def check_webhook_views(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django_pg_resilience.webhooks.checks import webhook_check_messages

    return webhook_check_messages()
