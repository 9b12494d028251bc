"""System checks. Ids are stable: ``pg_resilience.E0xx`` errors, ``W0xx`` warnings.

| id | what |
|----|------|
| E002 | a setting of the package has a wrong name or type |

Each concern adds its checks below in its own section; every message says how
to fix the problem.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from django_pg_resilience import conf


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    return [
        Error(message, hint="See the Settings section of the README.", id="pg_resilience.E002")
        for message in conf.settings_errors()
    ]


# --- backend checks ---


# --- middleware checks ---


# --- webhook checks ---


# --- health checks ---
