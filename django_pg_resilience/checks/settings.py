"""Settings: a wrong name or type in the package's settings (E002)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from django_pg_resilience import conf


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    return [
        Error(message, hint="See the Settings section of docs/backend.md.", id="pg_resilience.E002")
        for message in conf.settings_errors()
    ]
