"""A Redis broker and a real ``celery worker`` for tests and drills, on free ports.

::

    from django_pg_resilience.testing.jobs import CeleryWorker, RedisServer

    with RedisServer() as redis, CeleryWorker("proj.celery_app", env={...}) as worker:
        fulfil_order.delay(42)
        worker.kill_child()  # SIGKILL one pool process mid-run

Redis runs with no persistence in a temporary directory; neither touches a
server of the machine (6379 stays alone).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from django_pg_resilience.testing.cluster import free_port
from django_pg_resilience.testing.reaper import Reaper

__all__ = ["CeleryWorker", "RedisNotFound", "RedisServer", "redis_binary"]


class RedisNotFound(RuntimeError):
    """redis-server is not installed."""


def redis_binary() -> str | None:
    """The path of ``redis-server``, or None."""
    found = shutil.which("redis-server")
    if found:
        return found
    return "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:g} s")
        time.sleep(0.05)


class RedisServer:
    """``redis-server`` on a free loopback port, no persistence; ``url`` is ``redis://host:port``."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._reaper: Reaper | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self, timeout: float = 15.0) -> RedisServer:
        binary = redis_binary()
        if binary is None:
            raise RedisNotFound(
                "redis-server is not installed: apt-get install redis-server "
                "(python3 tests/run.py does it when run as root)"
            )
        self._dir = tempfile.TemporaryDirectory(prefix="pg-resilience-redis-")
        self.port = free_port()
        command = [binary, "--port", str(self.port), "--bind", self.host, "--dir", self._dir.name]
        self._process = subprocess.Popen(
            [*command, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._reaper = Reaper(self._process.pid, paths=(Path(self._dir.name),))
        try:
            _wait_for(self._answers, timeout, "redis-server did not answer")
        except BaseException:
            self.close()
            raise
        return self

    def _answers(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self._process.returncode}")
        with contextlib.suppress(OSError):
            import socket

            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        return False

    def close(self) -> None:
        # Dismissed first: a watcher must never signal a pid that a stopped server freed.
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.dismiss()
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


class CeleryWorker:
    """``celery -A <app> worker --pool prefork`` in its own process group, logging to ``log``."""

    def __init__(
        self,
        app: str,
        *,
        env: Mapping[str, str],
        log: Path,
        concurrency: int = 2,
        cwd: Path | None = None,
    ) -> None:
        self.app = app
        self.env = dict(env)
        self.log = log
        self.concurrency = concurrency
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        self._reaper: Reaper | None = None

    def __enter__(self) -> CeleryWorker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> CeleryWorker:
        command = [sys.executable, "-m", "celery", "-A", self.app, "worker", "--pool", "prefork"]
        command += ["--concurrency", str(self.concurrency), "--loglevel", "WARNING"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        command += ["--hostname", f"worker-{uuid.uuid4().hex[:8]}@%h"]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._output = self.log.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=self.cwd,
            env=self.env,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            # Its own group: stopping it stops the pool processes too.
            start_new_session=True,
        )
        self._reaper = Reaper(self.process.pid, group=True)
        return self

    def children(self) -> list[int]:
        """The pids of the pool's processes."""
        assert self.process is not None
        pid = self.process.pid
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]

    def kill_child(self) -> int:
        """SIGKILL one pool process (the worker starts another); its pid."""
        pid = self.children()[0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the worker's log."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def close(self, timeout: float = 20.0) -> None:
        """A warm shutdown (the running tasks finish), then SIGKILL to the group."""
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.dismiss()
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if self._output is not None:
            self._output.close()
            self._output = None
