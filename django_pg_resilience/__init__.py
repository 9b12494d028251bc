"""Keep a Django + PostgreSQL site up through a database failover."""

from __future__ import annotations

__version__ = "0.1.0"
