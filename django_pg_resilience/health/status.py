"""The four states of the Nagios plugin convention, and how they combine."""

from __future__ import annotations

import enum
from collections.abc import Iterable

__all__ = ["Status", "worst"]


class Status(enum.IntEnum):
    """A check's outcome; the value is the Nagios exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def severity(self) -> int:
        # CRITICAL > UNKNOWN > WARNING > OK (monitoring-plugins' max_state_alt):
        # "we could not tell" outranks a known warning, never a known outage.
        return _SEVERITY[self]


_SEVERITY = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}


def worst(statuses: Iterable[Status], default: Status = Status.OK) -> Status:
    """The most severe of ``statuses`` (``default`` when there are none)."""
    return max(statuses, key=lambda status: status.severity, default=default)
