"""A middleware that reads the database before the view (as some auth middleware do)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from tests.middleware.views import database


class QueryingMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/mw-query/"):
            from django.db import connections

            with connections[database()].cursor() as cursor:
                cursor.execute("SELECT 1")
        return self.get_response(request)
