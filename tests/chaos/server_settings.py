"""The example shop's settings with the connection handling under test, from the environment.

``SHOP_CONNECTIONS=persistent``: docs/backend.md's ``CONN_MAX_AGE=60`` with
``CONN_HEALTH_CHECKS``. ``SHOP_CONNECTIONS=pool``: ``OPTIONS["pool"]`` with
``CONN_MAX_AGE=0``, what Django advises under ASGI (persistent connections
there are per request thread).
"""

import os

from example_project.settings import *  # noqa: F403
from example_project.settings import DATABASES

_database = DATABASES["default"]
if os.environ.get("SHOP_CONNECTIONS") == "pool":
    _database["CONN_MAX_AGE"] = 0
    _database.setdefault("OPTIONS", {})["pool"] = {"min_size": 2, "max_size": 8, "timeout": 10}
else:
    _database["CONN_MAX_AGE"] = 60
    _database["CONN_HEALTH_CHECKS"] = True
