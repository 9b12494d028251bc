"""Planned maintenance: one switch every process sees, kept outside the database.

``manage.py maintenance on`` writes the switch; the 503 middleware reads it and
answers with the outage page (or JSON) until ``manage.py maintenance off``. The
switch lives where a process can read it while the database is being switched
over: a file (default, ``PG_RESILIENCE["MAINTENANCE_FILE"]``) or a shared cache
(``PG_RESILIENCE["MAINTENANCE_CACHE"]``, an alias of ``CACHES``).

Reading it costs one ``os.stat`` (or one cache get) per process every
``MAINTENANCE_CHECK_INTERVAL`` seconds; the file is read again only when its
inode, size or modification time changed. The file's existence is what turns
maintenance on: ``touch`` works too, and a file that is not the JSON the command
writes means "on, with the default Retry-After".
"""

from __future__ import annotations

from django_pg_resilience.maintenance.bypass import (
    DATABASE_CACHE,
    MAINTENANCE_CODE,
    STAFF_SESSION_KEY,
    bad_bypass_ips,
    deferred_for_staff,
    is_bypassed,
    is_staff_without_database,
    maintenance_response,
    remember_staff_at_login,
    take_deferred,
)
from django_pg_resilience.maintenance.state import (
    CACHE_KEY,
    CacheSwitch,
    FileSwitch,
    MaintenanceMode,
    MaintenanceState,
    Switch,
    current_state,
    maintenance_file,
    switch,
    turn_off,
    turn_on,
)

__all__ = [
    "CACHE_KEY",
    "DATABASE_CACHE",
    "MAINTENANCE_CODE",
    "STAFF_SESSION_KEY",
    "CacheSwitch",
    "FileSwitch",
    "MaintenanceMode",
    "MaintenanceState",
    "Switch",
    "bad_bypass_ips",
    "current_state",
    "deferred_for_staff",
    "is_bypassed",
    "is_staff_without_database",
    "maintenance_file",
    "maintenance_response",
    "remember_staff_at_login",
    "switch",
    "take_deferred",
    "turn_off",
    "turn_on",
]
