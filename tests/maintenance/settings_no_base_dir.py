"""The test settings without BASE_DIR and without MAINTENANCE_FILE: no switch file to derive."""

from __future__ import annotations

from tests.settings import *  # noqa: F403

del BASE_DIR  # noqa: F821
PG_RESILIENCE: dict[str, object] = {}
