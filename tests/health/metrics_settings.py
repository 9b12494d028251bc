"""Settings for the app under gunicorn in the metrics tests (nodes from the environment)."""

from __future__ import annotations

from tests.health.subprocess_settings import *  # noqa: F403

ROOT_URLCONF = "tests.health.metrics_urls"
