"""Stop a test server even when the process that started it dies first.

A test run killed from outside (a CI time-out's SIGTERM, ``kill -9``, Ctrl-C twice) runs no
``close()``: every server it started would be left running on the machine. So each server
gets a small watcher process holding the read end of a pipe from its owner. The owner that
cleans up says so (``done``) before the pipe closes; a pipe that closes without it means the
owner died, and the watcher stops the server and removes its directory.

:class:`~django_pg_resilience.testing.LocalCluster` has a watcher of its own, which stops
PostgreSQL with ``pg_ctl``; Redis, PgBouncer and the Celery worker use this one.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

__all__ = ["Reaper"]

_WATCH = """
import os, shutil, signal, sys
if sys.stdin.read().strip() == "done":
    raise SystemExit
pid, group, paths = int(sys.argv[1]), sys.argv[2] == "group", sys.argv[3:]
try:
    if pid and group:
        os.killpg(pid, signal.SIGKILL)
    elif pid:
        os.kill(pid, signal.SIGTERM)
except ProcessLookupError:
    pass
for path in paths:
    shutil.rmtree(path, ignore_errors=True)
"""


class Reaper:
    """Watches its owner for the server ``pid``; :meth:`dismiss` once the owner stopped it.

    ``group``: ``pid`` leads a process group (``start_new_session=True``), and the whole
    group is killed, pool processes and all. ``paths`` are removed after the kill (``pid``
    None: only that). Keep the object while the server runs: dropped, it closes the pipe.
    """

    def __init__(
        self, pid: int | None, *, group: bool = False, paths: tuple[Path, ...] = ()
    ) -> None:
        mode = "group" if group else "one"
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", _WATCH, str(pid or 0), mode, *map(str, paths)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the owner's process group must not stop it first
        )

    def dismiss(self) -> None:
        """The owner stopped the server itself: the watcher leaves it all alone. Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        with contextlib.suppress(OSError):
            process.stdin.write(b"done\n")
        with contextlib.suppress(OSError):
            process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
