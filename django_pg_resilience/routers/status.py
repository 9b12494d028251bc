"""What the router knows about one replica, and what it makes of it (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ReplicaStatus", "replay_lag"]


@dataclass(frozen=True)
class ReplicaStatus:
    """One measurement of a replica. ``measured_at`` is ``time.monotonic()``."""

    alias: str
    measured_at: float
    #: None when the replica could not be reached (``error`` says why).
    in_recovery: bool | None = None
    #: The last WAL position the replica replayed, as an integer.
    replay_position: int | None = None
    #: Seconds the replica's data is behind the primary (0 when caught up).
    lag: float = math.inf
    error: str | None = None

    @property
    def promoted(self) -> bool:
        """The alias answered as a primary: it is no replica of ours any more."""
        return self.in_recovery is False

    def has_replayed(self, position: int | None) -> bool:
        """True when the replica's data includes everything up to ``position``."""
        if position is None:
            return True
        return self.replay_position is not None and self.replay_position >= position


def replay_lag(
    replay: int | None,
    reference: int | None,
    seconds_since_replayed_commit: float | None,
) -> float:
    """Seconds the replica is behind, from its positions and its last replayed commit.

    ``reference`` is the primary's position (or, without it, what the replica
    has received). A replica that replayed up to it is caught up, however old
    its last replayed commit: an idle primary commits nothing, and the time
    since the last commit alone would make every replica of it look behind.
    """
    if replay is None:
        return math.inf
    if reference is not None and replay >= reference:
        return 0.0
    if seconds_since_replayed_commit is None:
        return math.inf
    return max(seconds_since_replayed_commit, 0.0)
