"""How a long-running command (``process_webhooks``, ``health --watch``) stops on a signal.

A signal handler runs in the main thread between two bytecodes, possibly while that thread is
inside ``threading.Event.wait()`` holding the event's lock, which is not reentrant: a handler
that calls ``Event.set()`` there waits for itself forever. So the handler here takes no lock:
it sets a flag and writes a byte to a socket that the loop's wait selects on.

SIGTERM or Ctrl-C asks the loop to end after what it is doing. With ``ctrl_c_twice=True``
the Ctrl-C handler the command found is put back at the first signal, so a second Ctrl-C is
the caller's (KeyboardInterrupt, at once): right for ``health --watch``, which has nothing to
lose, wrong for ``process_webhooks``, where an interrupted handler spends one of the event's
attempts (and a process manager often sends SIGTERM right after the terminal's SIGINT). Every
handler is put back when the loop ends: ``call_command`` from a program with handlers of its
own leaves them as they were. A signal the process was started ignoring (``nohup``, a shell's
``cmd &`` ignores SIGINT) stays ignored, as Python itself leaves it.
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
def stopped_by_signals(
    *, enabled: bool = True, ctrl_c_twice: bool = False
) -> Iterator[StopRequest]:
    """A :class:`StopRequest` that SIGTERM and Ctrl-C set while the block runs (unless the
    process ignores them).

    ``ctrl_c_twice``: after the first signal, Ctrl-C is the caller's again.

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

    def give_back(*signums: int) -> None:
        for signum in signums:
            if signum not in previous:  # a signal while the handlers were being installed
                continue
            handler = previous[signum]
            # None: a handler not installed from Python, which cannot be put back.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if ctrl_c_twice:
            give_back(signal.SIGINT)

    for signum in _SIGNALS:
        if signal.getsignal(signum) != signal.SIG_IGN:
            previous[signum] = signal.signal(signum, request_stop)
    try:
        yield stop
    finally:
        give_back(*previous)
        stop.close()
