from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class LoadUserMiddleware:
    """Reads request.user before the views, as many projects' own middleware do."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        _ = request.user.is_authenticated
        return self.get_response(request)
