"""What the router remembers about the current request (or thread, outside one)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["RoutingState", "current_state", "routing_state", "use_primary"]


@dataclass
class RoutingState:
    #: WAL position this client must see: a replica serves it only once it
    #: replayed this far (from the client's cookie or session, or this request).
    required_position: int | None = None
    #: A write was routed since ``required_position`` was last read from the primary.
    unrecorded_write: bool = False
    #: A write was routed in this request (it is then never re-run).
    wrote: bool = False
    #: ``use_primary()`` blocks open, or a request re-run after its replica failed.
    pinned: int = 0
    #: Replica aliases this request read from.
    replicas_used: set[str] = field(default_factory=set)

    def require(self, position: int | None) -> None:
        if position is not None and (
            self.required_position is None or position > self.required_position
        ):
            self.required_position = position


_state: contextvars.ContextVar[RoutingState | None] = contextvars.ContextVar(
    "pg_resilience_routing_state", default=None
)


def current_state() -> RoutingState:
    """The state of this request; outside a request, one for this thread or task."""
    state = _state.get()
    if state is None:
        state = RoutingState()
        _state.set(state)
    return state


@contextlib.contextmanager
def routing_state(state: RoutingState) -> Iterator[RoutingState]:
    """Route with ``state`` for the ``with`` block (the middleware's request scope)."""
    token = _state.set(state)
    try:
        yield state
    finally:
        _state.reset(token)


@contextlib.contextmanager
def use_primary() -> Iterator[None]:
    """Send every read of the ``with`` block to the primary.

    ::

        with use_primary():
            balance = Account.objects.get(pk=pk).balance
    """
    state = current_state()
    state.pinned += 1
    try:
        yield
    finally:
        state.pinned -= 1
