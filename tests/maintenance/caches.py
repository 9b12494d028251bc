"""A shared cache that notes which thread reads the maintenance switch."""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.filebased import FileBasedCache

from django_pg_resilience.maintenance import CACHE_KEY

#: The thread of every read of the switch's key, in order.
SWITCH_READ_THREADS: list[int] = []


class ThreadNotingCache(FileBasedCache):
    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        if key == CACHE_KEY:
            SWITCH_READ_THREADS.append(threading.get_ident())
        return super().get(key, default, version)
