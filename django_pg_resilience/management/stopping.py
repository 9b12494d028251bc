"""How a long-running command (``process_webhooks``, ``health --watch``) stops on a signal.

A signal handler runs in the main thread between two bytecodes, possibly while that thread is
inside ``threading.Event.wait()`` holding the event's lock, which is not reentrant: a handler
that calls ``Event.set()`` there waits for itself forever. So the handler here takes no lock:
it sets a flag and writes a byte to a socket that the loop's wait selects on.

The first SIGTERM or Ctrl-C asks the loop to end after what it is doing; the handlers the
command found are put back then, so a second one is the caller's (Ctrl-C: KeyboardInterrupt,
at once). They are put back when the loop ends, too: ``call_command`` from a program with
handlers of its own leaves them as they were.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = ["StopRequest", "stopped_by_signals"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """A stop flag that a signal handler may set (unlike ``threading.Event``).

    Waited on by one thread, the main one; :meth:`set` never blocks.
    """

    def __init__(self) -> None:
        self._requested = False
        # A socket pair, not a pipe: select() takes sockets on every platform.
        self._wakeup, self._waker = socket.socketpair()
        self._waker.setblocking(False)

    def set(self) -> None:
        self._requested = True
        with contextlib.suppress(OSError):  # full or closed: the flag is what counts
            self._waker.send(b"\0")

    def is_set(self) -> bool:
        return self._requested

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds or until :meth:`set`; True if it was set."""
        if not self._requested:
            select.select([self._wakeup], [], [], max(0.0, timeout))
        return self._requested

    def close(self) -> None:
        self._wakeup.close()
        self._waker.close()


@contextlib.contextmanager
def stopped_by_signals(*, enabled: bool = True) -> Iterator[StopRequest]:
    """A :class:`StopRequest` that SIGTERM and Ctrl-C set while the block runs.

    Disabled, or outside the main thread (where handlers cannot be installed), nothing
    sets it but the caller.
    """
    stop = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        try:
            yield stop
        finally:
            stop.close()
        return
    previous: dict[int, Any] = {}

    def give_back() -> None:
        for signum, handler in previous.items():
            # None: a handler not installed from Python, which cannot be put back.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()
        give_back()  # the next signal is the caller's: a second Ctrl-C interrupts at once

    for signum in _SIGNALS:
        previous[signum] = signal.signal(signum, request_stop)
    try:
        yield stop
    finally:
        give_back()
        stop.close()
