"""A threaded WSGI server of the Django app, in-process on 127.0.0.1, for real HTTP tests."""

from __future__ import annotations

import contextlib
import socketserver
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from django.core.handlers.wsgi import WSGIHandler


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 256  # 50 clients connect at once


@contextlib.contextmanager
def live_server() -> Iterator[str]:
    """Serve Django (settings.ROOT_URLCONF, read per request) and yield its base URL."""
    server = _ThreadingServer(("127.0.0.1", 0), _QuietHandler)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]


def send(request: urllib.request.Request, timeout: float = 30) -> Reply:
    """POST and return the reply, whatever its status."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return Reply(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.read(), dict(error.headers))
