"""Nothing of ours escapes before the middleware, where users run: persistent connections.

Django runs ``close_old_connections()`` in its ``request_started`` and
``request_finished`` receivers, outside every middleware, and Celery runs it around
each task. With ``CONN_MAX_AGE=60`` (what docs/backend.md recommends) a connection
opened before an outage is still there when the next request starts. The test
client disconnects those receivers, so these tests drive Django's own WSGI and
ASGI handlers instead: a request that starts during an outage must get the
middleware's 503, never the server's 500.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections, connections
from django.http import HttpRequest, HttpResponse
from django.urls import path
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience import stats
from django_pg_resilience.backend.alias import alias_state
from django_pg_resilience.testing import LocalCluster
from tests.backend.conftest import item_alias
from tests.testapp.models import Item

ALIAS = "persistent"


def count_items(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(Item.objects.using(ALIAS).count()))


urlpatterns = [path("count/", count_items)]


@pytest.fixture
def persistent(cluster: LocalCluster, settings: SettingsWrapper) -> Iterator[LocalCluster]:
    """An app on ALIAS with CONN_MAX_AGE=60 and the 503 middleware, served by Django's handlers."""
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = ["django_pg_resilience.middleware.DatabaseUnavailableMiddleware"]
    with item_alias(
        ALIAS, cluster.endpoint, CONN_MAX_AGE=60, OPTIONS={"resilience": {"deadline": 0.5}}
    ):
        yield cluster
        _close_in_asgi_thread()


def wsgi_get(url: str) -> tuple[int, bytes]:
    """One GET through WSGIHandler, request_started and request_finished included."""
    environ: dict[str, Any] = {"PATH_INFO": url}
    setup_testing_defaults(environ)
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    result = WSGIHandler()(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()  # sends request_finished, as a WSGI server does
    return int(statuses[0].split()[0]), body


def asgi_get(url: str) -> tuple[int, bytes]:
    """One GET through ASGIHandler (its sync views and receivers run in asgiref's thread)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": url,
        "raw_path": url.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        body_sent = False
        finished = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await finished.wait()  # the client stays until the response is complete
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                finished.set()

        await ASGIHandler()(scope, receive, send)

    asyncio.run(run())
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


def _close_in_asgi_thread() -> None:
    async def close() -> None:
        await sync_to_async(connections.close_all)()

    with contextlib.suppress(Exception):
        asyncio.run(close())


def crash(cluster: LocalCluster) -> None:
    """The server is gone: every open connection is reset and new ones are refused."""
    cluster.endpoint.point_to(None)
    cluster.endpoint.reset_all()


def outage_known_to_the_breaker(cluster: LocalCluster) -> None:
    """The endpoint goes silent (open connections look alive) and another thread's
    connect has already failed: the breaker knows of an outage younger than them."""
    cluster.endpoint.blackhole()
    breaker = alias_state(ALIAS).breaker
    budget = alias_state(ALIAS).settings.retry_policy.start()
    breaker.record_failure("direct", ConnectionRefusedError("refused"), budget)
    assert breaker.outage_since is not None


@pytest.mark.parametrize("get", [wsgi_get, asgi_get], ids=["wsgi", "asgi"])
@pytest.mark.parametrize(
    "fault", [crash, outage_known_to_the_breaker], ids=["crash", "breaker-knows"]
)
def test_a_request_during_an_outage_gets_the_503_never_a_500(
    persistent: LocalCluster, get: Any, fault: Any
) -> None:
    assert get("/count/") == (200, b"0")  # opens the persistent connection
    assert get("/count/") == (200, b"0")  # and reuses it (CONN_MAX_AGE=60)
    fault(persistent)
    status, body = get("/count/")
    assert status == 503, body
    assert b"database_unavailable" in body or b"<html" in body.lower()


def test_close_old_connections_during_an_outage_raises_nothing_and_dials_nothing(
    persistent: LocalCluster,
) -> None:
    Item.objects.using(ALIAS).count()
    wrapper = connections[ALIAS]
    assert wrapper.connection is not None
    outage_known_to_the_breaker(persistent)
    attempts = stats.snapshot().get("connect_attempts", {}).get(ALIAS, 0)
    accepted = persistent.endpoint.accepted

    close_old_connections()  # what request_started runs

    assert wrapper.connection is None  # dropped: it predates the outage
    assert stats.snapshot().get("connect_attempts", {}).get(ALIAS, 0) == attempts
    assert persistent.endpoint.accepted == accepted  # no socket was opened


def test_close_old_connections_keeps_a_working_connection(persistent: LocalCluster) -> None:
    Item.objects.using(ALIAS).count()
    raw = connections[ALIAS].connection
    close_old_connections()
    assert connections[ALIAS].connection is raw
    assert Item.objects.using(ALIAS).count() == 0
