"""PgBouncer in front of an endpoint, the way managed connection pools work.

DigitalOcean's connection pools are PgBouncer in transaction mode in front of
the primary. Put one in front of an :class:`EndpointProxy` and a failover looks
to the app as it does there::

    with LocalCluster() as cluster, PgBouncer(cluster.endpoint) as bouncer:
        DATABASES["default"].update(HOST=bouncer.host, PORT=bouncer.port)

Its failover settings are PgBouncer's own defaults unless a test lowers them
(``PgBouncer(endpoint, server_login_retry=1)``): a test that passes only with
shortened timeouts says so where it is written, and the defaults' cost is
measured, not hidden. The admin console (``SHOW POOLS`` ...) is open to the
``postgres`` user at :attr:`PgBouncer.admin_dsn`.

Needs Debian's ``pgbouncer`` package (``apt-get install pgbouncer``); as root it
runs as the ``postgres`` OS user, because PgBouncer refuses root.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Protocol

from django_pg_resilience.testing.cluster import (
    PostgresNotFound,
    _as_postgres_user,
    _chown_to_postgres,
    free_port,
)
from django_pg_resilience.testing.reaper import Reaper

__all__ = ["FAILOVER_SETTINGS", "PgBouncer", "find_pgbouncer"]

#: The settings that decide how long a failover lasts behind PgBouncer, with
#: PgBouncer's own defaults (seconds; 0 for ``server_check_delay`` checks every time).
FAILOVER_SETTINGS: dict[str, float] = {
    "server_login_retry": 15,
    "server_connect_timeout": 15,
    "query_wait_timeout": 120,
    "server_check_delay": 30,
    "dns_max_ttl": 15,
}


class _Address(Protocol):
    host: str
    port: int


def find_pgbouncer() -> str:
    """The pgbouncer binary, or a clear error naming the package to install."""
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if found is None:
        raise PostgresNotFound(
            "pgbouncer is not installed. Install it, e.g. `apt-get install pgbouncer`."
        )
    return found


class PgBouncer:
    """A PgBouncer process on a free loopback port, forwarding every database to ``target``."""

    def __init__(
        self,
        target: _Address,
        *,
        pool_mode: str = "transaction",
        default_pool_size: int = 20,
        max_client_conn: int = 500,
        server_login_retry: float | None = None,
        server_connect_timeout: float | None = None,
        query_wait_timeout: float | None = None,
        server_check_delay: float | None = None,
        dns_max_ttl: float | None = None,
        extra_settings: dict[str, str] | None = None,
    ) -> None:
        if pool_mode not in ("session", "transaction", "statement"):
            raise ValueError(
                f"pool_mode must be session, transaction or statement, not {pool_mode!r}"
            )
        self.target = target
        self.pool_mode = pool_mode
        self.default_pool_size = default_pool_size
        self.max_client_conn = max_client_conn
        #: The failover settings this PgBouncer is given; None leaves PgBouncer's default.
        self.settings: dict[str, float | None] = {
            "server_login_retry": server_login_retry,
            "server_connect_timeout": server_connect_timeout,
            "query_wait_timeout": query_wait_timeout,
            "server_check_delay": server_check_delay,
            "dns_max_ttl": dns_max_ttl,
        }
        self.extra_settings = dict(extra_settings or {})
        self.host = "127.0.0.1"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._reaper: Reaper | None = None

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def admin_dsn(self) -> str:
        """The admin console's connection string (``SHOW POOLS`` etc.)."""
        return f"host={self.host} port={self.port} dbname=pgbouncer user=postgres"

    def start(self, timeout: float = 20.0) -> PgBouncer:
        binary = find_pgbouncer()
        prefix = _as_postgres_user()
        self._dir = Path(tempfile.mkdtemp(prefix="pg-resilience-bouncer-"))
        _chown_to_postgres(self._dir)
        self.port = free_port()
        (self._dir / "users.txt").write_text('"postgres" ""\n')
        config = self._dir / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={self.target.host} port={self.target.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = {self.host}\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self._dir}\n"
            "auth_type = trust\n"
            f"auth_file = {self._dir / 'users.txt'}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.default_pool_size}\n"
            f"max_client_conn = {self.max_client_conn}\n"
            "admin_users = postgres\n"
            + "".join(
                f"{name} = {value:g}\n"
                for name, value in self.settings.items()
                if value is not None
            )
            + "".join(f"{name} = {value}\n" for name, value in self.extra_settings.items())
            + "ignore_startup_parameters = extra_float_digits,options,search_path\n"
            f"logfile = {self._dir / 'pgbouncer.log'}\n"
        )
        for path in (config, self._dir / "users.txt"):
            _chown_to_postgres(path)
        # PgBouncer logs every line to stderr too: a pipe nobody reads would fill
        # (64 KiB, a few hundred logins) and freeze it, so stderr goes to a file.
        with open(self._dir / "stderr.log", "wb") as stderr:
            self._process = subprocess.Popen(
                [*prefix, binary, str(config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd="/",
            )
        self._reaper = Reaper(self._process.pid, paths=(self._dir,))
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                assert self._dir is not None
                stderr = (self._dir / "stderr.log").read_text(errors="replace")
                raise RuntimeError(f"pgbouncer exited at start: {stderr.strip()[-2000:]}")
            # Listening is enough: whether the server behind it is up is the test's business.
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=1),
            ):
                return
            time.sleep(0.02)
        self.close()
        raise TimeoutError(f"pgbouncer did not listen on port {self.port} in {timeout} s")

    def close(self) -> None:
        """Stop PgBouncer and remove its directory. Idempotent."""
        # Dismissed first: a watcher must never signal a pid that a stopped server freed.
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.dismiss()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
