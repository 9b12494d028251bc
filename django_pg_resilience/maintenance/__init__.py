"""Planned maintenance: one switch every process sees, kept outside the database.

``manage.py maintenance on`` writes the switch; the 503 middleware reads it and
answers with the outage page (or JSON) until ``manage.py maintenance off``. The
switch lives where a process can read it while the database is being switched
over: a file (default, ``PG_RESILIENCE["MAINTENANCE_FILE"]``) or a shared cache
(``PG_RESILIENCE["MAINTENANCE_CACHE"]``, an alias of ``CACHES``).

Reading it costs one ``os.lstat`` (or one cache get) per process every
``MAINTENANCE_CHECK_INTERVAL`` seconds; the file is read again only when its
inode, size or modification time changed. The file's existence is what turns
maintenance on: ``touch`` works too, and a file that is not the JSON the command
writes means "on, with the default Retry-After". A switch that cannot be read
keeps what the process last read: it never turns maintenance off by itself.
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
    path_entry_problem,
    remember_staff_at_login,
    take_deferred,
    usable_path_prefixes,
)
from django_pg_resilience.maintenance.reader import (
    acurrent_state,
    current_state,
    turn_off,
    turn_on,
)
from django_pg_resilience.maintenance.state import MaintenanceMode, MaintenanceState
from django_pg_resilience.maintenance.switches import (
    CACHE_KEY,
    DEFAULT_FILE_NAME,
    CacheSwitch,
    FileSwitch,
    Switch,
    SwitchUnreadable,
    describe_file_type,
    maintenance_file,
    switch,
)

__all__ = [
    "CACHE_KEY",
    "DATABASE_CACHE",
    "DEFAULT_FILE_NAME",
    "MAINTENANCE_CODE",
    "STAFF_SESSION_KEY",
    "CacheSwitch",
    "FileSwitch",
    "MaintenanceMode",
    "MaintenanceState",
    "Switch",
    "SwitchUnreadable",
    "acurrent_state",
    "bad_bypass_ips",
    "current_state",
    "deferred_for_staff",
    "describe_file_type",
    "is_bypassed",
    "is_staff_without_database",
    "maintenance_file",
    "maintenance_response",
    "path_entry_problem",
    "remember_staff_at_login",
    "switch",
    "take_deferred",
    "turn_off",
    "turn_on",
    "usable_path_prefixes",
]
