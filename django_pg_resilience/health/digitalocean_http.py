"""How the package asks DigitalOcean over HTTP: bounded, redirect-free, and safe to quote.

Shared by the API client (:mod:`.digitalocean`) and the node metrics reader
(:mod:`.digitalocean_metrics`), which both send a secret (the API token, the
metrics credentials):

* **Bounded in time, as a whole.** A socket timeout bounds each read, so a
  server that drips a byte now and then keeps a thread forever. Here ``timeout``
  bounds the whole request (connect, TLS, headers and body): when it passes, a
  watchdog shuts the request's socket down and the blocked read ends.
* **Bounded in size.** A body above :data:`MAX_BODY_BYTES` is refused, whatever
  its ``Content-Length`` says.
* **Never redirected.** urllib would forward the ``Authorization`` header to
  wherever a redirect points, even another host.
* **Safe to show.** Every failure is a :class:`DigitalOceanError` whose message
  quotes no header.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from django_pg_resilience import stats

__all__ = [
    "MAX_BODY_BYTES",
    "TOKEN_ENV",
    "DigitalOceanError",
    "RefuseRedirects",
    "check_api_url",
    "check_token",
    "fetch",
]

TOKEN_ENV = "DIGITALOCEAN_TOKEN"  # noqa: S105 (a variable name)
#: The largest answer read (the API's JSON, a node's Prometheus text); larger is an error.
MAX_BODY_BYTES = 4 * 1024 * 1024


class DigitalOceanError(Exception):
    """The API could not be asked or did not answer usefully (message safe to show)."""


class RefuseRedirects(urllib.request.HTTPRedirectHandler):
    #: What to check when an address answers with a redirect.
    where = "PG_RESILIENCE['DIGITALOCEAN_API_URL']"

    def redirect_request(self, req: Any, fp: Any, code: int, *args: Any) -> None:
        fp.close()
        raise DigitalOceanError(
            f"{req.host} answered {code} with a redirect; redirects are refused so the "
            f"credentials are never sent to another address: check {self.where}"
        )


class _Deadline:
    """Shuts the sockets of one request down when its time is up."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shut(sock)
        return sock

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        # Shutting down (not closing) wakes the thread blocked on the socket with
        # an error and cannot hit a descriptor number reused by another socket.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _watched(base: type[http.client.HTTPConnection], deadline: _Deadline) -> Any:
    """``base`` whose TCP sockets ``deadline`` shuts down (before TLS: a dripped
    handshake is bounded too)."""

    class Watched(base):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            create: Any = self._create_connection  # type: ignore[has-type]
            self._create_connection = lambda *a, **kw: deadline.watch(create(*a, **kw))

    return Watched


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: Any) -> Any:
        return self.do_open(_watched(http.client.HTTPConnection, self._deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self._deadline = deadline
        self._tls = context

    def https_open(self, req: Any) -> Any:
        connection = _watched(http.client.HTTPSConnection, self._deadline)
        return self.do_open(connection, req, context=self._tls)


def fetch(
    request: urllib.request.Request,
    timeout: float,
    explain: Mapping[int, str],
    *,
    kind: str,
    context: ssl.SSLContext | None = None,
    redirects: type[RefuseRedirects] = RefuseRedirects,
) -> bytes:
    """The body of ``request``'s answer within ``timeout`` seconds in all.

    Any failure is a DigitalOceanError safe to show (``explain`` maps an HTTP
    status to what to fix). ``kind`` labels the request in the
    ``digitalocean_api_requests`` counter. ``context`` defaults to the system's CAs as they
    are now (built per call: since Python 3.12 an HTTPS handler makes its TLS
    context when created, so one made at import would miss a CA bundle set
    afterwards, e.g. ``SSL_CERT_FILE``).
    """
    base_url = f"{request.type}://{request.host}"
    stats.increment("digitalocean_api_requests", kind)
    deadline = _Deadline(timeout)
    opener = urllib.request.build_opener(
        redirects,
        _HTTPHandler(deadline),
        _HTTPSHandler(deadline, context or ssl.create_default_context()),
    )
    too_late = DigitalOceanError(f"no answer from {base_url} within {timeout:g} s")
    try:
        with opener.open(request, timeout=timeout) as response:
            body = _read_capped(response, base_url)
    except DigitalOceanError:
        raise
    except Exception as exc:
        if deadline.expired or _is_timeout(exc):
            raise too_late from None
        raise _explained(exc, base_url, request, explain) from None
    finally:
        deadline.cancel()
    if deadline.expired:  # a read cut short by the watchdog may end without an error
        raise too_late
    return body


def _read_capped(response: Any, base_url: str) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > MAX_BODY_BYTES:
        raise DigitalOceanError(_too_large(base_url))
    body: bytes = response.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise DigitalOceanError(_too_large(base_url))
    return body


def _too_large(base_url: str) -> str:
    return f"{base_url} answered with more than {MAX_BODY_BYTES // 1024} kB; the answer was refused"


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or (
        isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, TimeoutError)
    )


def _explained(
    exc: Exception, base_url: str, request: urllib.request.Request, explain: Mapping[int, str]
) -> DigitalOceanError:
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code in explain:
            return DigitalOceanError(explain[exc.code])
        return DigitalOceanError(
            f"{base_url} answered {exc.code} {exc.reason} for {request.selector}"
        )
    if isinstance(exc, urllib.error.URLError):
        return DigitalOceanError(f"cannot reach {base_url}: {exc.reason}")
    if isinstance(exc, OSError):
        return DigitalOceanError(f"cannot read from {base_url}: {exc.__class__.__name__}")
    # e.g. http.client's ValueError, which quotes the header
    return DigitalOceanError(
        f"cannot ask {base_url}: {exc.__class__.__name__} (details withheld: they may "
        "quote the credentials)"
    )


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_url(base_url: str) -> None:
    """Raise unless ``base_url`` is https, or http to a loopback address (a test server)."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return
    raise DigitalOceanError(
        "PG_RESILIENCE['DIGITALOCEAN_API_URL'] must start with https:// (plain http only "
        f"to a loopback test server); it starts with {parts.scheme or 'no scheme'!r}"
    )


def check_token(token: str) -> None:
    """Raise unless ``token`` could be a token: printable ASCII, no space or line break."""
    if not all("!" <= char <= "~" for char in token):
        raise DigitalOceanError(
            f"{TOKEN_ENV} contains a space, a line break or another character no token has: "
            "set it again from the token shown once in the DigitalOcean control panel"
        )
