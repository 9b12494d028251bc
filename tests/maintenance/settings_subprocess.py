"""The test settings for a ``manage.py maintenance`` run in another process."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

PG_RESILIENCE = {
    key: value
    for key, value in {
        "MAINTENANCE_FILE": os.environ.get("MAINTENANCE_TEST_FILE"),
        "MAINTENANCE_CACHE": os.environ.get("MAINTENANCE_TEST_CACHE"),
    }.items()
    if value
}
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "shared": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": os.environ.get("MAINTENANCE_TEST_CACHE_DIR", "/nonexistent"),
    },
    # Nothing listens on port 1: every call fails.
    "unreachable": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://:cache-password-never-shown@127.0.0.1:1/0",
    },
}
