"""A TCP proxy on 127.0.0.1 that plays a managed database's read/write endpoint.

On DigitalOcean (and RDS, Cloud SQL, ...) the application connects to a DNS name
that the provider moves to the promoted standby after a failover. The proxy is
that name, on this machine::

    with LocalCluster() as cluster, EndpointProxy(cluster.primary) as endpoint:
        DATABASES["default"].update(HOST=endpoint.host, PORT=endpoint.port)
        cluster.kill(cluster.primary)
        endpoint.point_to(cluster.promote(cluster.standbys[0]))

Faults it can play:

* :meth:`point_to` moves the endpoint: new connections go to the new target and
  every open one is closed, as when the node behind it died.
  ``point_to(None)`` leaves it pointing nowhere: new connections are reset.
* :meth:`blackhole`: open connections stay open but nothing is forwarded and
  nothing comes back; new connections are accepted and never answered. On
  loopback the kernel still acknowledges TCP segments and keepalives, so this
  is a server that hangs rather than a cable that was cut: only timeouts in
  the client (connect_timeout, a statement's own deadline) can notice it.
* :meth:`reset_all` resets (RST) every open connection.
* :meth:`delay` adds latency to every chunk in both directions.
* :meth:`restore` ends the blackhole and the delay; held data then flows.

One thread serves every connection (a selector loop), so a test that opens
thousands of connections does not open thousands of threads.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["EndpointProxy"]

_log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_HIGH_WATER = 1024 * 1024  # stop reading a side whose output is this far behind


class _Target(Protocol):
    host: str
    port: int


def _address(target: _Target | tuple[str, int] | None) -> tuple[str, int] | None:
    if target is None:
        return None
    if isinstance(target, tuple):
        return target
    return (target.host, target.port)


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Side:
    """One socket of a proxied connection and the data waiting to be written to it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.delayed: collections.deque[tuple[float, bytes]] = collections.deque()
        self.out = bytearray()
        self.events = 0  # what the selector watches this socket for


class _Connection:
    def __init__(self, client: socket.socket) -> None:
        self.client = _Side(client)
        self.upstream: _Side | None = None
        self.connecting = False
        self.closed = False

    def peer_of(self, side: _Side) -> _Side | None:
        return self.upstream if side is self.client else self.client


class EndpointProxy:
    """See the module docs. Context manager; also :meth:`start` / :meth:`close`."""

    def __init__(self, target: _Target | tuple[str, int] | None = None, port: int = 0) -> None:
        self.host = "127.0.0.1"
        self._requested_port = port
        self.port = 0
        self._target = _address(target)
        self._blackholed = False
        self._delay = 0.0
        self._connections: set[_Connection] = set()
        self._commands: collections.deque[Callable[[], None]] = collections.deque()
        self._selector = selectors.DefaultSelector()
        self._thread: threading.Thread | None = None
        self._running = False
        self._closed = False
        self._loop_error: BaseException | None = None
        self.accepted = 0  # connections accepted since start, for tests and reports

    # --- lifecycle -------------------------------------------------------------

    def __enter__(self) -> EndpointProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> EndpointProxy:
        """Listen and serve on a thread. Starting a started proxy does nothing.

        One listener and one loop own the connections: a second loop over the
        same sockets would corrupt their buffers, so there is never one.
        """
        if self._closed:
            raise RuntimeError(
                "this EndpointProxy was closed; make a new one (a closed proxy cannot restart)"
            )
        if self._thread is not None:
            return self
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, self._requested_port))
        self._listener.listen(512)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ, ("accept", None))
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._running = True
        self._thread = threading.Thread(
            target=self._loop, name=f"EndpointProxy:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Close every connection and the listener, and stop the thread. Idempotent."""
        if self._closed or self._thread is None:
            self._closed = True
            return
        self._closed = True
        if self._thread.is_alive() and self._loop_error is None:
            self._call(self._shutdown)
            self._thread.join(timeout=10)
        for sock in (self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    @property
    def target(self) -> tuple[str, int] | None:
        return self._target

    @property
    def open_connections(self) -> int:
        return self._call(lambda: sum(1 for c in self._connections if not c.closed))

    @property
    def delayed_bytes(self) -> int:
        """Bytes :meth:`delay` holds back right now, both directions, every connection."""
        return self._call(
            lambda: sum(
                len(data)
                for conn in self._connections
                for side in (conn.client, conn.upstream)
                if side is not None
                for _, data in side.delayed
            )
        )

    # --- faults ----------------------------------------------------------------

    def point_to(self, target: _Target | tuple[str, int] | None) -> None:
        """New connections go to ``target``; every open one is closed."""

        def apply() -> None:
            self._target = _address(target)
            for conn in list(self._connections):
                self._close_connection(conn)

        self._call(apply)

    def blackhole(self) -> None:
        """Forward nothing and answer nothing, keeping every connection open."""

        def apply() -> None:
            self._blackholed = True

        self._call(apply)

    def reset_all(self) -> None:
        """RST every open connection (both sides)."""

        def apply() -> None:
            for conn in list(self._connections):
                self._close_connection(conn, reset=True)

        self._call(apply)

    def delay(self, ms: float) -> None:
        """Add ``ms`` milliseconds of latency to every chunk, both directions."""
        if ms < 0:
            raise ValueError("delay must be >= 0 ms")

        def apply() -> None:
            self._delay = ms / 1000.0

        self._call(apply)

    def restore(self) -> None:
        """End the blackhole and the delay. The target stays as it is."""

        def apply() -> None:
            self._blackholed = False
            self._delay = 0.0
            for conn in list(self._connections):
                if conn.upstream is None and not conn.connecting:
                    self._connect_upstream(conn)
                self._update_interest(conn)

        self._call(apply)

    # --- the loop ----------------------------------------------------------------

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the proxy thread and return its result (the loop owns all state)."""
        if self._loop_error is not None:
            raise RuntimeError(
                f"EndpointProxy:{self.port} is dead: its loop thread crashed with "
                f"{self._loop_error!r}; every connection through it was closed"
            ) from self._loop_error
        if threading.current_thread() is self._thread or not self._running:
            return fn()
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append(fn())
            except BaseException as exc:  # handed back to the caller below
                box.append(exc)
                raise
            finally:
                done.set()

        self._commands.append(run)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if not done.wait(timeout=10):
            raise TimeoutError("EndpointProxy did not answer in 10 s")
        if box and isinstance(box[0], BaseException):
            raise box[0]
        return box[0] if box else None

    def _loop(self) -> None:
        try:
            self._serve()
        except BaseException as exc:
            # A silent proxy would look like a database that hangs: make the
            # crash visible to clients (refused, reset) and to the next call.
            self._loop_error = exc
            self._running = False
            self._abandon()
            _log.exception("EndpointProxy:%s loop thread crashed", self.port)

    def _serve(self) -> None:
        while self._running:
            timeout = self._next_release_in()
            for key, events in self._selector.select(timeout):
                kind, data = key.data
                if kind == "accept":
                    self._accept()
                elif kind == "wake":
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                else:
                    self._on_socket(data, key.fileobj, events)  # type: ignore[arg-type]
            while self._commands:
                command = self._commands.popleft()
                with contextlib.suppress(Exception):
                    command()
            self._release_delayed()

    def _shutdown(self) -> None:
        for conn in list(self._connections):
            self._close_connection(conn)
        with contextlib.suppress(Exception):
            self._selector.unregister(self._listener)
        self._listener.close()
        self._running = False

    def _abandon(self) -> None:
        """After a crash: reset every connection and stop listening, touching no buffer."""
        for conn in list(self._connections):
            conn.closed = True
            for side in (conn.client, conn.upstream):
                if side is not None:
                    _reset(side.sock)
        self._connections.clear()
        with contextlib.suppress(Exception):
            self._listener.close()

    def _next_release_in(self) -> float | None:
        soonest = None
        for conn in self._connections:
            for side in (conn.client, conn.upstream):
                if side is not None and side.delayed:
                    when = side.delayed[0][0]
                    soonest = when if soonest is None else min(soonest, when)
        if soonest is None:
            return None
        return max(0.0, soonest - time.monotonic())

    def _release_delayed(self) -> None:
        now = time.monotonic()
        for conn in list(self._connections):
            for side in (conn.client, conn.upstream):
                if side is None:
                    continue
                moved = False
                while side.delayed and side.delayed[0][0] <= now:
                    side.out += side.delayed.popleft()[1]
                    moved = True
                if moved:
                    self._update_interest(conn)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.accepted += 1
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._target is None:
                _reset(client)
                continue
            conn = _Connection(client)
            self._connections.add(conn)
            if not self._blackholed:
                self._connect_upstream(conn)
            self._update_interest(conn)

    def _connect_upstream(self, conn: _Connection) -> None:
        assert self._target is not None
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = upstream.connect_ex(self._target)
        if code not in (0, errno.EINPROGRESS):
            upstream.close()
            self._close_connection(conn, reset=True)
            return
        conn.upstream = _Side(upstream)
        conn.connecting = code != 0

    def _update_interest(self, conn: _Connection) -> None:
        if conn.closed:
            return
        for side in (conn.client, conn.upstream):
            if side is None:
                continue
            peer = conn.peer_of(side)
            events = 0
            if side is conn.upstream and conn.connecting:
                events = selectors.EVENT_WRITE
            elif not self._blackholed:
                # Read while the peer is connected and not too far behind.
                if peer is not None and not conn.connecting and len(peer.out) < _HIGH_WATER:
                    events |= selectors.EVENT_READ
                if side.out:
                    events |= selectors.EVENT_WRITE
            self._set_events(side, conn, events)

    def _set_events(self, side: _Side, conn: _Connection, events: int) -> None:
        """Watch ``side`` for ``events``; with none, take it out of the selector."""
        if events == side.events:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            if side.events == 0:
                self._selector.register(side.sock, events, ("sock", conn))
            elif events == 0:
                self._selector.unregister(side.sock)
            else:
                self._selector.modify(side.sock, events, ("sock", conn))
        side.events = events

    def _on_socket(self, conn: _Connection, sock: socket.socket, events: int) -> None:
        if conn.closed:
            return
        side = conn.client if sock is conn.client.sock else conn.upstream
        assert side is not None
        if conn.connecting and side is conn.upstream:
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self._close_connection(conn, reset=True)
                return
            conn.connecting = False
            self._update_interest(conn)
            return
        if events & selectors.EVENT_WRITE and side.out:
            try:
                sent = sock.send(side.out)
                del side.out[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close_connection(conn, reset=True)
                return
        if events & selectors.EVENT_READ and not self._blackholed:
            peer = conn.peer_of(side)
            try:
                data = sock.recv(_CHUNK)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._close_connection(conn, reset=True)
                return
            if data == b"":
                self._close_connection(conn)
                return
            if data and peer is not None:
                # Behind data still delayed, even once the delay is lifted: a
                # stream must not be reordered.
                if self._delay or peer.delayed:
                    peer.delayed.append((time.monotonic() + self._delay, data))
                else:
                    peer.out += data
        self._update_interest(conn)

    def _close_connection(self, conn: _Connection, *, reset: bool = False) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._connections.discard(conn)
        for side in (conn.client, conn.upstream):
            if side is None:
                continue
            self._set_events(side, conn, 0)
            if reset:
                _reset(side.sock)
            else:
                # Flush what we can of the last bytes (a server's goodbye message).
                if side.out and not self._blackholed:
                    with contextlib.suppress(OSError):
                        side.sock.send(side.out)
                with contextlib.suppress(OSError):
                    side.sock.close()
