"""Webhook view classes by handler path: how the worker and the admin find ``handle()``.

Every ``IdempotentWebhookView`` subclass registers itself here when its class
is created (``__init_subclass__``), under the dotted path stored in
``WebhookEvent.handler``. The worker, the task queue's hand-over and the
admin's replay look the path up here, so they never import the views module
(which imports them). A path not registered yet (the worker process has not
imported the view's module) is imported once with ``import_string``, which
registers the class as a side effect of defining it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

__all__ = ["WebhookView", "handler_path", "load_handler", "load_view", "register"]


class WebhookView(Protocol):
    """What the worker needs of a view: its handler, and its secrets to mask them."""

    def handle(self, event: Any) -> None: ...

    def get_secrets(self) -> list[str]: ...


_views: dict[str, type[WebhookView]] = {}
_lock = threading.Lock()


def handler_path(view_class: type) -> str:
    """The dotted path stored in ``WebhookEvent.handler`` for ``view_class``."""
    return f"{view_class.__module__}.{view_class.__qualname__}"


def register(view_class: type[WebhookView]) -> None:
    """Make ``view_class`` the one :func:`load_view` returns for its path (the latest wins)."""
    with _lock:
        _views[handler_path(view_class)] = view_class


def _view_class(path: str) -> type[WebhookView]:
    found = _views.get(path)
    if found is not None:
        return found
    imported = import_string(path)  # a dotted path stored before this process imported it
    found = _views.get(path)
    if found is None or found is not imported:
        raise ImproperlyConfigured(f"{path} is not an IdempotentWebhookView subclass.")
    return found


def load_view(path: str) -> WebhookView:
    """An instance of the webhook view class at ``path`` (``WebhookEvent.handler``)."""
    return _view_class(path)()


def load_handler(path: str) -> Callable[[Any], None]:
    """The ``handle`` of the view class at ``path`` (for the worker and the admin's replay)."""
    return load_view(path).handle
