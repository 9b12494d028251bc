"""Settings for running ``python -m django health`` as a real process in the tests.

The node addresses come from the environment, set by the test:
HEALTH_TEST_HOST / HEALTH_TEST_PORT (the default alias) and HEALTH_TEST_NODES
(JSON for PG_RESILIENCE["NODES"]); HEALTH_TEST_SETTINGS (JSON) adds other
PG_RESILIENCE keys.
"""

from __future__ import annotations

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

DATABASES["default"].update(
    HOST=os.environ.get("HEALTH_TEST_HOST", "127.0.0.1"),
    PORT=os.environ.get("HEALTH_TEST_PORT", "1"),
    PASSWORD=os.environ.get("HEALTH_TEST_PASSWORD", ""),
)
PG_RESILIENCE = {
    "NODES": json.loads(os.environ.get("HEALTH_TEST_NODES", "{}")),
    **json.loads(os.environ.get("HEALTH_TEST_SETTINGS", "{}")),
}
