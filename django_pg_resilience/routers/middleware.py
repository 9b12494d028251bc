"""``ReplicaRouterMiddleware``: read-your-writes across requests, and no errors from a dead replica.

Where it goes in ``MIDDLEWARE`` depends on where the position is kept. With
the cookie (the default), put it right after ``DatabaseUnavailableMiddleware``,
before ``SessionMiddleware``: a session saved at the end of the request is then
a write the position covers::

    MIDDLEWARE = [
        "django_pg_resilience.middleware.DatabaseUnavailableMiddleware",
        "django_pg_resilience.routers.ReplicaRouterMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        ...
    ]

With ``READ_YOUR_WRITES = "session"``, put it after ``SessionMiddleware``
(it keeps the position in the session, which it then reads from the primary).

* A request that wrote leaves the primary's WAL position with the client
  (an encrypted, signed cookie or a session key, READ_YOUR_WRITES; see
  :mod:`.position_cookie`); the client's next
  requests read from a replica only once it replayed past it.
* A safe request (GET, HEAD, OPTIONS) that wrote nothing and whose replica
  failed under it is run again with every read on the primary, and the replica
  is skipped by every request until its probe reaches it again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import connections
from django.http import HttpRequest, HttpResponseBase

from django_pg_resilience import stats
from django_pg_resilience.errors import is_availability_error
from django_pg_resilience.routers.config import RouterConfig, replica_monitor, router_config
from django_pg_resilience.routers.context import RoutingState, routing_state, use_primary
from django_pg_resilience.routers.position_cookie import read_position, write_position
from django_pg_resilience.routers.positions import format_lsn, parse_lsn
from django_pg_resilience.routers.router import primary_position

__all__ = ["ReplicaRouterMiddleware"]

logger = logging.getLogger("django_pg_resilience.routers")

_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_STATE_ATTRIBUTE = "_pg_resilience_routing_state"


class ReplicaRouterMiddleware:
    """See the module docs. Sync only: Django adapts it for async stacks."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        config = router_config()
        state = RoutingState()
        setattr(request, _STATE_ATTRIBUTE, state)
        with routing_state(state):
            state.require(self._client_position(request, config))
            response: HttpResponseBase = self.get_response(request)
            if state.wrote:
                self._remember(request, response, state, config)
        return response

    # --- read-your-writes --------------------------------------------------

    def _client_position(self, request: HttpRequest, config: RouterConfig) -> int | None:
        if config.read_your_writes == "cookie":
            return read_position(request, config.key, config.max_age)
        if config.read_your_writes == "session":
            session = getattr(request, "session", None)
            if session is None:
                return None
            # The session was written on the primary; a replica may not have it yet.
            with use_primary():
                saved = session.get(config.key)
            if not isinstance(saved, dict) or time.time() - saved.get("at", 0) > config.max_age:
                return None
            return parse_lsn(saved.get("position"))
        return None

    def _remember(
        self,
        request: HttpRequest,
        response: HttpResponseBase,
        state: RoutingState,
        config: RouterConfig,
    ) -> None:
        if config.read_your_writes == "request":
            return
        if state.unrecorded_write:
            try:
                state.require(primary_position(config.primary))
            except Exception as exc:
                logger.warning(
                    "The primary's WAL position could not be read after a write (%s); "
                    "this client's next reads may go to a replica that lacks it.",
                    type(exc).__name__,
                )
                return
        if state.required_position is None:
            return
        if config.read_your_writes == "cookie":
            write_position(
                request,
                response,
                config.key,
                state.required_position,
                max_age=config.max_age,
                secure=config.cookie_secure,
            )
        elif getattr(request, "session", None) is not None:
            position = format_lsn(state.required_position)
            request.session[config.key] = {"position": position, "at": time.time()}

    # --- a replica that fails under a request --------------------------------

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        state: RoutingState | None = getattr(request, _STATE_ATTRIBUTE, None)
        if state is None or state.wrote or request.method not in _SAFE_METHODS:
            return None
        failed = _failed_replica(exception, state)
        if failed is None:
            return None
        replica_monitor().mark_down(failed, type(exception).__name__)
        with contextlib.suppress(Exception):
            connections[failed].close()
        stats.increment("replica_read_retries", failed)
        logger.warning(
            "Replica %r failed under %s %s (%s); running it again on the primary.",
            failed,
            request.method,
            request.path,
            type(exception).__name__,
        )
        match = request.resolver_match
        if match is None:
            return None
        with use_primary():
            response = match.func(request, *match.args, **match.kwargs)
            render = getattr(response, "render", None)
            if callable(render) and not getattr(response, "is_rendered", True):
                response = render()
        return response


def _failed_replica(exception: BaseException, state: RoutingState) -> str | None:
    """The replica this request read from whose failure ``exception`` is, if any."""
    if not state.replicas_used or not is_availability_error(exception):
        return None
    alias = getattr(exception, "alias", None)
    if alias in state.replicas_used:
        return str(alias)
    if alias is None:
        for used in state.replicas_used:
            if getattr(connections[used], "errors_occurred", False):
                return used
    return None
