"""The webhook views' system checks (E301-E305, W301), for every view routed in the URLconf.

| id | what |
|----|------|
| E301 | no usable signing secret (none, empty or whitespace-only ones, or get_secrets() raised) |
| E302 | no ``handle(event)`` |
| E303 | a Standard Webhooks secret that is not ``whsec_`` + base64 of a key |
| E304 | no verifier |
| E305 | ``durable_ack_standby`` names an alias not in DATABASES |
| W301 | WEBHOOK_MAX_BODY_SIZE above DATA_UPLOAD_MAX_MEMORY_SIZE, or that setting is None |
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, URLResolver, get_resolver

from django_pg_resilience import conf
from django_pg_resilience.webhooks.registry import handler_path
from django_pg_resilience.webhooks.sources import StandardWebhookView
from django_pg_resilience.webhooks.verifiers import standard_webhooks_key, usable_secrets
from django_pg_resilience.webhooks.views import IdempotentWebhookView

__all__ = ["check_webhook_views", "webhook_check_messages", "webhook_views"]


@register("urls")
def check_webhook_views(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    return webhook_check_messages()


def _walk(patterns: Iterable[Any]) -> Iterator[Any]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            yield pattern.callback


def webhook_views() -> list[type[IdempotentWebhookView]]:
    """Every IdempotentWebhookView subclass routed in the root URLconf."""
    found: dict[type, None] = {}
    for callback in _walk(get_resolver().url_patterns):
        view_class = getattr(callback, "view_class", None)
        if isinstance(view_class, type) and issubclass(view_class, IdempotentWebhookView):
            found[view_class] = None
    return list(found)


def _overrides(view_class: type, name: str) -> bool:
    return getattr(view_class, name) is not getattr(IdempotentWebhookView, name)


def _secret_messages(
    view_class: type[IdempotentWebhookView], name: str
) -> tuple[list[str], list[CheckMessage]]:
    """E301: secrets that cannot be read, none usable, or some unusable. Also the secrets."""
    try:
        secrets = view_class().get_secrets()
    except Exception as exc:  # a get_secrets() that reads something missing
        return [], [
            Error(
                f"{name}.get_secrets() raised {type(exc).__name__}.",
                hint="Make get_secrets() return the list of signing secrets.",
                obj=view_class,
                id="pg_resilience.E301",
            )
        ]
    usable = usable_secrets(secrets)
    if not usable:
        return secrets, [
            Error(
                f"{name} has no usable signing secret (none, or only empty or "
                "whitespace-only ones): every delivery is refused with 401.",
                hint="Set `secrets = [...]` on the view (the app's client secret; keep the "
                "old one too while rotating) or override get_secrets(); check that the "
                "environment variables they come from are set.",
                obj=view_class,
                id="pg_resilience.E301",
            )
        ]
    if len(usable) < len(secrets):
        return secrets, [
            Error(
                f"{name} has {len(secrets) - len(usable)} empty, whitespace-only or non-text "
                "signing secret(s): they are never used (anyone could sign with an empty key).",
                hint="Remove them, or set the environment variable they come from "
                "(env('OLD_SECRET', default='') gives '').",
                obj=view_class,
                id="pg_resilience.E301",
            )
        ]
    return secrets, []


def _standard_secret_messages(
    view_class: type[IdempotentWebhookView], name: str, secrets: list[str]
) -> list[CheckMessage]:
    """E303: a Standard Webhooks secret that is not ``whsec_`` + base64 of a key."""
    if not issubclass(view_class, StandardWebhookView):
        return []
    for secret in usable_secrets(secrets):
        try:
            standard_webhooks_key(secret)
        except ImproperlyConfigured:
            return [
                Error(
                    f"{name} has a secret that is not a usable Standard Webhooks secret "
                    "(not base64, or an empty key): it is never used.",
                    hint="Copy the secret as the sender shows it: 'whsec_' + base64 "
                    "(is the environment variable it comes from set?).",
                    obj=view_class,
                    id="pg_resilience.E303",
                )
            ]
    return []


def _shape_messages(view_class: type[IdempotentWebhookView], name: str) -> list[CheckMessage]:
    """E302 no handle(), E304 no verifier, E305 an unknown durable_ack_standby alias."""
    messages: list[CheckMessage] = []
    if not _overrides(view_class, "handle"):
        messages.append(
            Error(
                f"{name} does not define handle(event).",
                hint="Define handle(self, event) to process event.payload.",
                obj=view_class,
                id="pg_resilience.E302",
            )
        )
    if view_class.verifier is None and not _overrides(view_class, "verify"):
        messages.append(
            Error(
                f"{name} has no verifier: no delivery can be verified.",
                hint="Subclass ShopifyWebhookView, StandardWebhookView or GitHubWebhookView, "
                "or override verify(request).",
                obj=view_class,
                id="pg_resilience.E304",
            )
        )
    standby = view_class.durable_ack_standby
    if standby is not None and standby not in settings.DATABASES:
        messages.append(
            Error(
                f"{name}.durable_ack_standby is {standby!r}, which is not in DATABASES.",
                hint="Name a DATABASES alias that points at a standby, or set it to None to "
                "ask the primary's pg_stat_replication.",
                obj=view_class,
                id="pg_resilience.E305",
            )
        )
    return messages


def _view_messages(view_class: type[IdempotentWebhookView]) -> list[CheckMessage]:
    name = handler_path(view_class)
    secrets, messages = _secret_messages(view_class, name)
    messages += _shape_messages(view_class, name)
    messages += _standard_secret_messages(view_class, name, secrets)
    return messages


def webhook_check_messages() -> list[CheckMessage]:
    """All webhook messages: per routed view, plus the body-size setting."""
    messages: list[CheckMessage] = []
    for view_class in webhook_views():
        messages.extend(_view_messages(view_class))
    try:
        limit = conf.app_settings().WEBHOOK_MAX_BODY_SIZE
    except ImproperlyConfigured:
        return messages  # E002 reports it
    django_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if django_limit is None:
        messages.append(
            Warning(
                "DATA_UPLOAD_MAX_MEMORY_SIZE is None: Django reads any request body whole into "
                "memory when a view or middleware touches request.body or request.POST. The "
                f"webhook views read at most WEBHOOK_MAX_BODY_SIZE ({limit}) + 1 bytes, but "
                "a middleware reading the body before them does not.",
                hint="Set DATA_UPLOAD_MAX_MEMORY_SIZE (Django's default is 2621440), at least "
                "WEBHOOK_MAX_BODY_SIZE.",
                id="pg_resilience.W301",
            )
        )
    elif limit > django_limit:
        messages.append(
            Warning(
                f"PG_RESILIENCE['WEBHOOK_MAX_BODY_SIZE'] ({limit}) is above "
                f"DATA_UPLOAD_MAX_MEMORY_SIZE ({django_limit}): Django refuses bodies over "
                "its own limit first (413).",
                hint="Lower WEBHOOK_MAX_BODY_SIZE or raise DATA_UPLOAD_MAX_MEMORY_SIZE.",
                id="pg_resilience.W301",
            )
        )
    return messages
