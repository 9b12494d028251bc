"""Redis, PgBouncer and the Celery worker are stopped even when the test process dies first."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from django_pg_resilience.testing.jobs import redis_binary
from django_pg_resilience.testing.pgbouncer import find_pgbouncer
from django_pg_resilience.testing.reaper import Reaper
from tests.harness.owner import killed_owner


def _alive(pid: int) -> bool:
    """Running, and not a zombie (in a container, PID 1 may never reap an orphan)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _wait_until(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)
    assert condition(), what  # type: ignore[operator]


def test_a_killed_owner_leaves_no_redis_no_pgbouncer_and_no_worker_group() -> None:
    if redis_binary() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    try:
        find_pgbouncer()
    except RuntimeError as exc:
        pytest.skip(f"pgbouncer is not installed: {exc}")
    script = """
        import json, os, subprocess, sys, tempfile, types
        from django_pg_resilience.testing.jobs import RedisServer
        from django_pg_resilience.testing.pgbouncer import PgBouncer
        from django_pg_resilience.testing.reaper import Reaper

        redis = RedisServer().start()
        nobody = types.SimpleNamespace(host="127.0.0.1", port=9)
        bouncer = PgBouncer(nobody).start()  # listens whatever is behind it
        # A stand-in for a Celery worker: a group leader with a child (its pool).
        worker = subprocess.Popen(
            [sys.executable, "-c", "import subprocess; subprocess.run(['sleep', '300'])"],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        reaper = Reaper(worker.pid, group=True)  # held, as CeleryWorker holds it
        print(json.dumps({
            "ports": [redis.port, bouncer.port],
            "dirs": sorted(os.listdir(tempfile.gettempdir())),
            "worker_pid": worker.pid,
        }), flush=True)
        os._exit(1)  # no close(), no atexit: like a SIGKILL
        """
    with killed_owner(script) as (out, tmp):
        started = json.loads(out.stdout)
        assert len(started["dirs"]) == 2, started["dirs"]  # Redis's and PgBouncer's
        for port in started["ports"]:
            _wait_until(lambda port=port: not _listening(port), f"port {port} still listening")
        worker = started["worker_pid"]
        _wait_until(lambda: not _alive(worker), "the worker's leader still running")
        in_its_session = subprocess.run(
            ["pgrep", "-s", str(worker)], capture_output=True, text=True
        ).stdout.split()
        assert [pid for pid in in_its_session if _alive(int(pid))] == []  # the pool went too
        _wait_until(lambda: not any(tmp.iterdir()), "a directory is left in its temp dir")


def test_a_dismissed_reaper_leaves_the_server_alone(tmp_path: Path) -> None:
    server = subprocess.Popen(["sleep", "300"])
    kept = tmp_path / "kept"
    kept.mkdir()
    try:
        Reaper(server.pid, paths=(kept,)).dismiss()
        assert server.poll() is None
        assert kept.exists()
    finally:
        server.kill()
        server.wait(10)
