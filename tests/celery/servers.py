"""A Redis server and a ``celery worker`` process of the test's own, on free ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from django_pg_resilience.testing.cluster import free_port
from tests.celery.app import BROKER_ENV, DATABASE_ENV

ROOT = Path(__file__).resolve().parent.parent.parent


class Address(Protocol):
    host: str
    port: int


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        time.sleep(0.05)


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """``redis://127.0.0.1:PORT`` of a redis-server with no persistence, in ``directory``."""
    import redis

    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    process = subprocess.Popen(
        [*command, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        _wait_for(answers, 15, "redis-server did not answer")
        yield f"redis://127.0.0.1:{port}"
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def have_redis() -> bool:
    return bool(shutil.which("redis-server")) or Path("/usr/bin/redis-server").exists()


@dataclass
class Worker:
    """A running ``celery worker`` (prefork) and where it writes its log."""

    process: subprocess.Popen[bytes]
    log: Path

    def children(self) -> list[int]:
        """The pids of the pool's child processes."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def kill_child(self) -> int:
        """SIGKILL one pool process (the pool starts a new one); its pid."""
        pid = self.children()[0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def celery_worker(broker: str, database: Address, log_dir: Path) -> Iterator[Worker]:
    """``celery -A tests.celery.app worker -P prefork -c 2`` against ``database``; stopped after."""
    log = log_dir / f"worker-{uuid.uuid4().hex[:8]}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.celery.worker_settings",
        BROKER_ENV: broker,
        DATABASE_ENV: f"{database.host}:{database.port}",
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "celery", "-A", "tests.celery.app", "worker"]
    command += ["--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    command += ["--hostname", f"tests-{uuid.uuid4().hex[:8]}@%h"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = Worker(process, log)
    try:
        yield worker
    finally:
        # A warm shutdown first (finish the running tasks), then the group.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
