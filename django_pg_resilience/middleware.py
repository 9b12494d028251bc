"""Answer a database outage with a calm 503 instead of a 500.

Put :class:`DatabaseUnavailableMiddleware` first in ``MIDDLEWARE``::

    MIDDLEWARE = [
        "django_pg_resilience.middleware.DatabaseUnavailableMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        ...
    ]

Only availability errors (see :func:`django_pg_resilience.errors.is_availability_error`)
become a 503; an IntegrityError or a bug stays a 500.

How it reaches the whole stack: Django wraps every middleware in
``convert_exception_to_response``, so an error raised by a middleware further
down (a session saved by ``SessionMiddleware``) reaches this one as a finished
500 response, not as an exception. A ``got_request_exception`` receiver notes
availability errors on the request as Django builds that 500, and the middleware
swaps the 500 for the 503 on the way out. Errors raised by the view (or while a
``TemplateResponse`` renders) are caught earlier by ``process_exception``, before
Django logs a 500; errors that propagate (``DEBUG_PROPAGATE_EXCEPTIONS``) are
caught around ``get_response``.

Planned maintenance (``manage.py maintenance on``) is answered here too, with
the same 503 page or JSON, before anything else runs; a request that staff may
pass waits for the user in ``process_view`` (see
:mod:`django_pg_resilience.maintenance`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import connections
from django.dispatch import Signal
from django.http import HttpRequest, HttpResponseBase
from django.urls import resolve

from django_pg_resilience import maintenance, signals, stats
from django_pg_resilience.backend.busy import busy_reason
from django_pg_resilience.backend.compat import mark_response_logged
from django_pg_resilience.errors import is_availability_error, sqlstate_of
from django_pg_resilience.unavailable import (
    BARE_503_ATTRIBUTE,
    PASSTHROUGH_ATTRIBUTE,
    is_busy_error,
    response_kind,
    unavailable_response,
)

__all__ = [
    "BARE_503_ATTRIBUTE",
    "PASSTHROUGH_ATTRIBUTE",
    "DatabaseUnavailableMiddleware",
    "note_availability_error",
]

logger = logging.getLogger("django_pg_resilience.middleware")

# Where the got_request_exception receiver leaves the error for the middleware.
_NOTED_ERROR = "_pg_resilience_unavailable_error"
# Marks a maintenance 503 (its kind) until it is counted and signalled.
_MAINTENANCE_MARK = "_pg_resilience_maintenance_kind"

_GetResponse = Callable[[HttpRequest], Any]


def _answered_with_503(error: BaseException) -> bool:
    # Down or busy: a 503 either way (a busy database is counted apart, not an outage).
    return is_availability_error(error)


def note_availability_error(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """Remember an availability error Django is about to turn into a 500.

    Connected to ``got_request_exception`` once, in ``AppConfig.ready()``.
    """
    # Django sends the signal inside its except block (asgiref re-raises the
    # error in the worker thread for the async handler), so exc_info is set.
    error = sys.exc_info()[1]
    if request is not None and error is not None and _answered_with_503(error):
        setattr(request, _NOTED_ERROR, error)


def _view_flag(request: HttpRequest, name: str) -> bool:
    match = getattr(request, "resolver_match", None)
    if match is None:
        # The error came before URL resolution (from a middleware): resolve
        # here. Resolving reads only the URLconf, never the database.
        try:
            match = resolve(request.path_info, urlconf=getattr(request, "urlconf", None))
        except Exception:
            return False
    func = match.func
    view_class = getattr(func, "view_class", None)
    return bool(getattr(func, name, False) or getattr(view_class, name, False))


def _alias_of(error: BaseException) -> str:
    alias = getattr(error, "alias", None)
    if isinstance(alias, str):
        return alias
    # Django's wrap_database_errors marks the connection that failed.
    for connection in connections.all(initialized_only=True):
        if getattr(connection, "errors_occurred", False):
            return connection.alias
    return "default"


class DatabaseUnavailableMiddleware:
    """Turn database availability errors into a 503: the page, or JSON for APIs and webhooks.

    Sync and async capable. See the module docstring for where it catches
    errors, and :func:`django_pg_resilience.unavailable.unavailable_response`
    for the response itself.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: _GetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        early = self._maintenance(request, maintenance.current_state())
        if early is not None:
            self._announce(request, early)
            return early
        try:
            response = self.get_response(request)
        except Exception as error:
            if not self._handles(request, error):
                raise
            response = self._respond(request, error)
            self._announce(request, response)
            return response
        response = self._replace_noted_500(request, response)
        response = self._answer_deferred_maintenance(request, response)
        self._announce(request, response)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        # A read of the switch that is due runs in a thread, off the event loop.
        early = self._maintenance(request, await maintenance.acurrent_state())
        if early is not None:
            await self._aannounce(request, early)
            return early
        try:
            response = await get_response(request)
        except Exception as error:
            if not self._handles(request, error):
                raise
            response = self._respond(request, error)
            await self._aannounce(request, response)
            return response
        response = self._replace_noted_500(request, response)
        response = self._answer_deferred_maintenance(request, response)
        await self._aannounce(request, response)
        return response

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponseBase | None:
        """Answer a view's availability error before Django logs and renders a 500."""
        if not self._handles(request, exception):
            return None
        return self._respond(request, exception)

    def process_view(
        self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any
    ) -> HttpResponseBase | None:
        """Answer maintenance now that the user is known, unless staff may pass."""
        state = maintenance.take_deferred(request)
        if state is None or maintenance.is_staff_without_database(request):
            return None
        return self._respond_maintenance(request, state, bare=False)

    # Shared by __call__ and __acall__; none of it does I/O but the logging (the
    # maintenance switch is read before, by current_state or acurrent_state).

    def _maintenance(
        self, request: HttpRequest, state: maintenance.MaintenanceState | None
    ) -> HttpResponseBase | None:
        if state is None:
            return None
        webhook = _view_flag(request, BARE_503_ATTRIBUTE)
        health = _view_flag(request, PASSTHROUGH_ATTRIBUTE)
        if maintenance.is_bypassed(request, health_view=health, webhook_view=webhook):
            return None
        if not webhook and maintenance.deferred_for_staff(request, state):
            return None
        return self._respond_maintenance(request, state, bare=webhook)

    def _answer_deferred_maintenance(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        # process_view never ran: no URL matched, or a middleware answered first.
        answer = self.process_view(request, None, (), {})
        return response if answer is None else answer

    def _respond_maintenance(
        self, request: HttpRequest, state: maintenance.MaintenanceState, *, bare: bool
    ) -> HttpResponseBase:
        response = maintenance.maintenance_response(request, state, bare=bare)
        setattr(response, _MAINTENANCE_MARK, response_kind(request, bare=bare))
        mark_response_logged(response)
        return response

    def _handles(self, request: HttpRequest, error: BaseException) -> bool:
        return _answered_with_503(error) and not _view_flag(request, PASSTHROUGH_ATTRIBUTE)

    def _replace_noted_500(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        error = request.__dict__.pop(_NOTED_ERROR, None)
        if error is None or response.status_code != 500 or not self._handles(request, error):
            return response
        return self._respond(request, error)

    def _respond(self, request: HttpRequest, error: BaseException) -> HttpResponseBase:
        response = unavailable_response(
            request, error, bare=_view_flag(request, BARE_503_ATTRIBUTE)
        )
        # Marks the response for _announce: one signal, log line and count per 503.
        response._pg_resilience_error = error  # type: ignore[attr-defined]
        # _announce logs it (at WARNING): Django's own ERROR line for every 5xx
        # would mail the admins once per request during a failover.
        mark_response_logged(response)
        return response

    def _unannounced_error(self, response: HttpResponseBase) -> BaseException | None:
        return response.__dict__.pop("_pg_resilience_error", None)

    def _log_and_count(
        self, request: HttpRequest, response: HttpResponseBase, error: BaseException
    ) -> dict[str, Any] | None:
        """Log and count one 503; the outage signal's kwargs, or None for a busy database."""
        alias = _alias_of(error)
        retry_after = int(response["Retry-After"])
        if is_busy_error(error):
            stats.increment("busy_responses", alias)
            logger.warning(
                "Database %r busy (%s): answered 503 to %s %s (Retry-After %ss); the database "
                "is up but full, not an outage",
                alias,
                busy_reason(error),
                request.method,
                request.path,
                retry_after,
            )
            return None
        sqlstate = sqlstate_of(error)
        stats.increment("unavailable_responses", alias)
        # The error's class and SQLSTATE only: driver messages can name hosts
        # and users, and the query string can carry tokens.
        logger.warning(
            "Database %r unavailable: answered 503 to %s %s (Retry-After %ss, %s%s)",
            alias,
            request.method,
            request.path,
            retry_after,
            type(error).__name__,
            f" {sqlstate}" if sqlstate else "",
        )
        return {"request": request, "alias": alias, "retry_after": retry_after, "error": error}

    def _unannounced(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> tuple[Signal, dict[str, Any]] | None:
        """The signal and kwargs owed for ``response`` (counted now), or None."""
        kind = response.__dict__.pop(_MAINTENANCE_MARK, None)
        if kind is not None:
            # Not logged per request: the process logs when maintenance starts and ends.
            stats.increment("maintenance_responses", kind)
            retry_after = int(response["Retry-After"])
            return signals.maintenance_response, {
                "request": request,
                "retry_after": retry_after,
                "kind": kind,
            }
        error = self._unannounced_error(response)
        if error is None:
            return None
        kwargs = self._log_and_count(request, response, error)
        if kwargs is None:
            return None
        return signals.database_unavailable_response, kwargs

    def _announce(self, request: HttpRequest, response: HttpResponseBase) -> None:
        owed = self._unannounced(request, response)
        if owed is None:
            return
        signal, kwargs = owed
        _log_failed_receivers(signal, signal.send_robust(sender=type(self), **kwargs))

    async def _aannounce(self, request: HttpRequest, response: HttpResponseBase) -> None:
        owed = self._unannounced(request, response)
        if owed is None:
            return
        signal, kwargs = owed
        if hasattr(signal, "asend_robust"):  # Django 5.0+
            results = await signal.asend_robust(sender=type(self), **kwargs)
        else:  # pragma: no cover - Django 4.2
            results = signal.send_robust(sender=type(self), **kwargs)
        _log_failed_receivers(signal, results)


def _log_failed_receivers(signal: Signal, results: list[tuple[Any, Any]]) -> None:
    name = (
        "maintenance_response"
        if signal is signals.maintenance_response
        else "database_unavailable_response"
    )
    for receiver, result in results:
        if isinstance(result, Exception):
            logger.error("Receiver %r of %s failed", receiver, name)
