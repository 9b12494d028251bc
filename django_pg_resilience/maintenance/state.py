"""The maintenance switch's state: what the 503 says while maintenance is on."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from django_pg_resilience import conf

__all__ = ["MaintenanceMode", "MaintenanceState", "default_retry_after"]


@dataclass(frozen=True)
class MaintenanceState:
    """Maintenance is on: what the 503 says."""

    retry_after: int
    message: str = ""
    #: Unix time it was turned on (0 when unknown, e.g. a touched file).
    since: float = 0.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes | None) -> MaintenanceState:
        """Parse what :meth:`to_json` wrote; anything else is "on" with the defaults."""
        try:
            data = json.loads(text or "")
            retry_after = data["retry_after"]
            if not isinstance(retry_after, int) or isinstance(retry_after, bool):
                raise TypeError("retry_after")
            message = data.get("message", "")
            since = data.get("since", 0.0)
            return cls(
                retry_after=max(1, retry_after),
                message=message if isinstance(message, str) else "",
                since=float(since) if isinstance(since, int | float) else 0.0,
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls(retry_after=default_retry_after())


class MaintenanceMode(Exception):
    """The reason of a maintenance 503; carries its Retry-After to ``unavailable_response``."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("planned maintenance")
        self.retry_after = retry_after


def default_retry_after() -> int:
    """Retry-After when maintenance is on without one (a touched file, an unreadable switch)."""
    return max(1, conf.app_settings().MAINTENANCE_RETRY_AFTER)
