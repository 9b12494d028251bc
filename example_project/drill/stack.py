"""The drill's moving parts: a LocalCluster behind its endpoint, and the shop on gunicorn.

Everything started here is stopped by :class:`Stack`'s ``close()`` (also on
Ctrl-C or an error): gunicorn (its whole process group), the proxy, and the
PostgreSQL servers.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django_pg_resilience.health.pgbouncer import RECOMMENDED as PGBOUNCER_RECOMMENDED
from django_pg_resilience.testing import EndpointProxy, LocalCluster, Node, PgBouncer, free_port

ROOT = Path(__file__).resolve().parent.parent.parent
SETTINGS = "example_project.settings"
#: The drill's Shopify app secret: made up here, never printed.
WEBHOOK_SECRET = "drill-shopify-secret"


@dataclass
class HealthResult:
    exit_code: int | None
    report: Any = None
    error: str = ""

    STATUS_NAMES = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}

    @property
    def status(self) -> str:
        if self.exit_code is None:
            return "not available"
        return self.STATUS_NAMES.get(self.exit_code, f"exit {self.exit_code}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "status": self.status,
            "report": self.report,
            "error": self.error,
        }


@dataclass
class Stack:
    """A cluster, its endpoint and the shop's server, configured from the drill's options."""

    engine: str = "resilient"  # or "stock"
    durable_ack: bool = False
    #: TLS-only nodes, reached with sslmode=verify-full, as on a managed database.
    tls: bool = False
    workers: int = 3
    threads: int = 4
    server_log: Path = ROOT / "out" / "drill-server.log"
    #: None: the app talks to the endpoint; "defaults" or "recommended": through a
    #: PgBouncer (transaction pooling) with PgBouncer's or our failover settings.
    pgbouncer: str | None = None
    #: Django's CONN_MAX_AGE for the shop (None: the settings' default, 0).
    conn_max_age: int | None = None
    #: postgresql.conf settings of every node (``{"max_connections": "30"}``).
    server_settings: dict[str, str] = field(default_factory=dict)
    #: gunicorn's configuration file (a benchmark's adds hooks to the shop's).
    gunicorn_config: Path = ROOT / "example_project" / "gunicorn.conf.py"
    cluster: LocalCluster | None = None
    bouncer: PgBouncer | None = None
    server: subprocess.Popen[bytes] | None = None
    port: int = 0
    _server_log: IO[bytes] | None = field(default=None, repr=False)

    # --- lifecycle ------------------------------------------------------------

    def start_cluster(self) -> LocalCluster:
        # A durable acknowledgement needs a standby to flush the commit, also
        # after the failover: a second standby follows the promoted one, as a
        # managed database provisions a new standby.
        self.cluster = LocalCluster(
            standbys=2 if self.durable_ack else 1,
            tls=self.tls,
            server_settings=self.server_settings or None,
        ).start()
        _ = self.cluster.endpoint  # the proxy, in front of the primary
        if self.pgbouncer is not None:
            settings = PGBOUNCER_RECOMMENDED if self.pgbouncer == "recommended" else {}
            self.bouncer = PgBouncer(self.endpoint, **settings).start()
        return self.cluster

    @property
    def endpoint(self) -> EndpointProxy:
        assert self.cluster is not None
        return self.cluster.endpoint

    def env(self) -> dict[str, str]:
        """The shop's environment: the database is reached through the endpoint proxy only."""
        assert self.cluster is not None
        endpoint: EndpointProxy | PgBouncer = self.bouncer or self.endpoint
        nodes = ",".join(
            f"{node.name}=postgres://postgres@{node.host}:{node.port}/{self.cluster.dbname}"
            for node in self.cluster.nodes
        )
        tls = self.cluster.tls_params()
        # A managed database's URL carries its TLS options; libpq's PGSSL* variables
        # cover the other connections (the health probes of each node).
        url_options = dict(tls)
        if self.conn_max_age is not None:
            url_options["conn_max_age"] = str(self.conn_max_age)  # django-environ's name
        query = "?" + "&".join(f"{k}={v}" for k, v in url_options.items()) if url_options else ""
        return {
            **os.environ,
            **{f"PG{key.upper()}": value for key, value in tls.items()},
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "DATABASE_URL": (
                f"postgres://postgres@{endpoint.host}:{endpoint.port}/{self.cluster.dbname}{query}"
            ),
            "PG_RESILIENCE_ENABLED": "false" if self.engine == "stock" else "true",
            "SHOPIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SHOPIFY_DURABLE_ACK": "true" if self.durable_ack else "false",
            "PG_RESILIENCE_NODES": nodes,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``python -m django <args>`` for the shop, as a subprocess."""
        return subprocess.run(
            [sys.executable, "-m", "django", *args, f"--settings={SETTINGS}"],
            env=self.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def migrate_and_seed(self) -> None:
        # migrate runs the system checks (a broken configuration stops here); once is enough.
        for args in (
            ("migrate", "--verbosity=0"),
            ("seed_shop", "--products=20", "--skip-checks"),
        ):
            result = self.manage(*args)
            if result.returncode != 0:
                raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stderr.strip()}")

    def start_server(self, timeout: float = 60.0) -> None:
        self.port = free_port()
        self.server_log.parent.mkdir(parents=True, exist_ok=True)
        self._server_log = open(self.server_log, "wb")  # noqa: SIM115
        self.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(self.gunicorn_config),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--threads",
                str(self.threads),
            ],
            env=self.env(),
            cwd=ROOT,
            stdout=self._server_log,
            stderr=subprocess.STDOUT,
            # Its own process group: a Ctrl-C is ours to handle, and stopping the
            # group stops every worker.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.server.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited with {self.server.returncode}; see {self.server_log}"
                )
            if self._answers("/"):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"gunicorn did not answer within {timeout} s")
            time.sleep(0.1)

    def _answers(self, path: str) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def stop_server(self) -> None:
        server, self.server = self.server, None
        if server is not None and server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
        if self._server_log is not None:
            self._server_log.close()
            self._server_log = None

    def close(self) -> None:
        """Stop the server, then the proxy and the servers. Safe to call twice."""
        try:
            self.stop_server()
        finally:
            bouncer, self.bouncer = self.bouncer, None
            cluster, self.cluster = self.cluster, None
            try:
                if bouncer is not None:
                    bouncer.close()
            finally:
                if cluster is not None:
                    cluster.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- facts ----------------------------------------------------------------

    def health(self) -> HealthResult:
        """``manage.py health --format json``: exit code and report, or "not available"."""
        try:
            result = self.manage("health", "--format", "json", timeout=60)
        except subprocess.TimeoutExpired:
            return HealthResult(None, error="manage.py health did not finish in 60 s")
        if "Unknown command" in result.stderr:
            return HealthResult(None, error="manage.py health is not installed")
        try:
            report = json.loads(result.stdout)
        except ValueError:
            report = None
        return HealthResult(result.returncode, report, result.stderr.strip()[-500:])

    def orders_in_database(self) -> list[int]:
        """Every stored Order's shopify_order_id, read from the current primary itself."""
        assert self.cluster is not None
        primary: Node = self.cluster.primary
        rows = primary.query("SELECT shopify_order_id FROM shop_order")
        return [int(row[0]) for row in rows]

    def orders_on_the_old_primary(self, order_ids: Collection[int]) -> set[int] | None:
        """Which of ``order_ids`` a stopped old primary holds; None if no node is stopped.

        Each stopped node is started again on its own data dir (crash recovery
        replays its WAL: the commits it acknowledged are there), asked, and
        stopped. Meanwhile the cluster has two primaries, of which the endpoint
        names only the new one: call this after the traffic and the health checks.
        A node rejoined as a standby (``pg_rewind`` dropped what it alone had)
        cannot be asked.
        """
        assert self.cluster is not None
        stopped = [
            node
            for node in self.cluster.nodes
            if node is not self.cluster.primary and not node.is_running()
        ]
        if not stopped:
            return None
        found: set[int] = set()
        for node in stopped:
            self.cluster.start(node)
            try:
                rows = node.query(
                    "SELECT shopify_order_id FROM shop_order WHERE shopify_order_id = ANY(%s)",
                    [list(order_ids)],
                )
            finally:
                self.cluster.kill(node)
            found |= {int(row[0]) for row in rows}
        return found
