"""A real PostgreSQL primary with streaming standbys, on this machine, for tests.

::

    from django_pg_resilience.testing import LocalCluster

    with LocalCluster(standbys=1) as cluster:
        old = cluster.primary
        cluster.kill(old)                      # a crash: pg_ctl stop -m immediate
        new = cluster.promote(cluster.standbys[0])
        cluster.rejoin_as_standby(old)         # pg_rewind, then stream from `new`

The servers run from the machine's own binaries (``PG_BINDIR``, ``pg_config
--bindir``, or the newest ``/usr/lib/postgresql/*/bin``), in a temp dir, on free
loopback ports, as the ``postgres`` OS user when the process is root
(PostgreSQL refuses to run as root). Authentication is ``trust`` for the
``postgres`` superuser and for replication, and ``scram-sha-256`` for every
other role, so :meth:`LocalCluster.create_user` gives a password to test.

Nothing is left behind: :meth:`LocalCluster.close` stops every server and
removes the temp dir, and a small reaper process does the same if this process
dies without closing (a killed test run, a crash).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from django_pg_resilience.testing.netns import NetworkNamespace
from django_pg_resilience.testing.proxy import EndpointProxy
from django_pg_resilience.testing.reaper import Reaper

__all__ = [
    "LocalCluster",
    "Node",
    "PostgresNotFound",
    "find_bindir",
    "free_port",
    "postgis_missing",
]

# Settings that make a throwaway cluster fast and able to fail over, rewind and
# report lag. fsync=off is safe here: an immediate stop is a crash of the server,
# not of the machine, so the OS still has every write.
_SERVER_CONF = """
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = '256MB'
hot_standby = on
hot_standby_feedback = on
wal_log_hints = on
fsync = off
full_page_writes = on
synchronous_commit = on
shared_buffers = '32MB'
max_connections = 100
wal_receiver_status_interval = '1s'
wal_retrieve_retry_interval = '200ms'
checkpoint_timeout = '30min'
log_min_messages = warning
log_line_prefix = '%m [%p] %q%a '
"""

_HBA = """
local       all          all                         trust
host        replication  all         127.0.0.1/32    trust
host        all          postgres    127.0.0.1/32    trust
host        all          all         127.0.0.1/32    scram-sha-256
"""


# TLS only, as on a managed database: a plain TCP connection is refused, so a test
# that gets through proves TLS was used. The Unix socket stays open for pg_ctl.
_HBA_TLS_ONLY = """
local       all          all                         trust
hostssl     replication  all         127.0.0.1/32    trust
hostssl     all          postgres    127.0.0.1/32    trust
hostssl     all          all         127.0.0.1/32    scram-sha-256
hostnossl   all          all         127.0.0.1/32    reject
hostnossl   replication  all         127.0.0.1/32    reject
"""


def _tls_conf(folder: Path) -> str:
    return (
        "ssl = on\n"
        f"ssl_cert_file = '{folder / 'server.crt'}'\n"
        f"ssl_key_file = '{folder / 'server.key'}'\n"
        f"ssl_ca_file = '{folder / 'ca.crt'}'\n"
    )


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """Where the PostgreSQL server binaries are: PG_BINDIR, pg_config, or the newest Debian dir."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            candidates.append(Path(out))

    def version_of(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_of, reverse=True)
    candidates.extend(Path(p) for p in debian)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise PostgresNotFound(
        "No PostgreSQL server binaries found (looked at PG_BINDIR, `pg_config --bindir` and "
        "/usr/lib/postgresql/*/bin). Install the server, e.g. `apt-get install postgresql` "
        "on Debian/Ubuntu, or set PG_BINDIR to the directory that holds initdb and pg_ctl."
    )


def postgis_missing(bindir: Path | None = None) -> str | None:
    """Why GeoDjango cannot run against these servers, or None when it can.

    Needs the PostGIS extension of the server's major version and the GDAL and
    GEOS libraries GeoDjango loads (Debian: postgresql-15-postgis-3, gdal-bin).
    """
    import ctypes.util

    try:
        server = bindir or find_bindir()
    except PostgresNotFound as exc:
        return str(exc)
    version = server.parent.name  # /usr/lib/postgresql/<major>/bin
    controls = glob.glob(f"/usr/share/postgresql/{version}/extension/postgis.control")
    if not controls:
        return (
            f"PostGIS is not installed for PostgreSQL {version} "
            f"(apt-get install postgresql-{version}-postgis-3)"
        )
    for library, package in (("gdal", "gdal-bin"), ("geos_c", "libgeos-c1v5")):
        if ctypes.util.find_library(library) is None:
            return f"the {library} library is missing (apt-get install {package})"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres_user() -> list[str]:
    """The command prefix that drops root to the postgres OS user."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresNotFound(
            "This process runs as root and PostgreSQL refuses root, but `runuser` is missing "
            "to start it as the `postgres` user. Run the tests as a normal user."
        )
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresNotFound(
            "This process runs as root and there is no `postgres` OS user to run PostgreSQL as. "
            "Install the server package (`apt-get install postgresql`), which creates it, or run "
            "the tests as a normal user."
        ) from None
    return [runuser, "-u", "postgres", "--"]


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


class Node:
    """One PostgreSQL server of a :class:`LocalCluster`."""

    def __init__(self, cluster: LocalCluster, name: str, port: int) -> None:
        self.cluster = cluster
        self.name = name
        self.host = "127.0.0.1"
        self.port = port
        self.data_dir = cluster.base_dir / name
        self.log_file = cluster.base_dir / f"{name}.log"
        #: The network namespace the server runs in (``LocalCluster(netns=True)``'s primary).
        self.namespace: NetworkNamespace | None = None

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.host}:{self.port}>"

    @property
    def dsn(self) -> str:
        """A libpq connection string for the superuser (trust auth, no password)."""
        return f"host={self.host} port={self.port} user=postgres dbname={self.cluster.dbname}"

    def dsn_for(self, user: str, password: str, dbname: str | None = None) -> str:
        db = dbname or self.cluster.dbname
        return f"host={self.host} port={self.port} user={user} password={password} dbname={db}"

    def connect(self, *, autocommit: bool = True, **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection as the superuser; close it (``with`` does)."""
        kwargs.setdefault("connect_timeout", 5)
        return psycopg.connect(self.dsn, autocommit=autocommit, **kwargs)

    def query(self, query: str | sql.Composable, params: Sequence[Any] | None = None) -> list[Any]:
        """Run one statement in a short-lived connection and return its rows."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    @property
    def role(self) -> str:
        """``"primary"`` or ``"standby"``, as the server itself says."""
        (in_recovery,) = self.query("SELECT pg_is_in_recovery()")[0]
        return "standby" if in_recovery else "primary"

    def is_running(self) -> bool:
        result = self.cluster._pg_ctl("status", "-D", str(self.data_dir), check=False)
        return result.returncode == 0

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the server accepts connections."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2, autocommit=True):
                    return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.02)
        raise TimeoutError(f"{self} did not accept connections in {timeout} s: {last}")


class LocalCluster:
    """A primary and ``standbys`` streaming standbys. See the module docs."""

    def __init__(
        self,
        standbys: int = 1,
        *,
        dbname: str = "postgres",
        bindir: str | Path | None = None,
        server_settings: dict[str, str] | None = None,
        tls: bool = False,
        netns: bool = False,
    ) -> None:
        self.standby_count = standbys
        #: TLS only, as on a managed database: see :meth:`tls_params`.
        self.tls = tls
        self.ca_file: Path | None = None
        self.dbname = dbname
        self.bindir = Path(bindir) if bindir else find_bindir()
        self.server_settings = dict(server_settings or {})
        self.base_dir = Path("/nonexistent")
        self.nodes: list[Node] = []
        self._primary: Node | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()
        self._closed = False
        self._endpoint: EndpointProxy | None = None
        #: With ``netns=True``: the primary's own network namespace (see :mod:`.netns`).
        self.netns = netns
        self.namespace: NetworkNamespace | None = None

    # --- lifecycle -------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self, node: Node | None = None) -> LocalCluster:
        """Create and start the cluster; or, given a stopped ``node``, start that node again.

        A node restarts in the role its data dir says (a killed primary comes
        back as a primary: use :meth:`rejoin_as_standby` after a promotion).
        """
        if node is not None:
            self._start_server(node)
            return self
        self._prefix = _as_postgres_user()
        self.base_dir = Path(tempfile.mkdtemp(prefix="pg-resilience-"))
        _chown_to_postgres(self.base_dir)
        self._start_reaper()
        try:
            if self.tls:
                self._make_certificates()
            primary = self._new_node("node0")
            if self.netns:
                self._place_in_namespace(primary)
            self._init_primary(primary)
            self._primary = primary
            for _ in range(self.standby_count):
                self.add_standby()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every server (immediately) and remove the temp dir. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._endpoint is not None:
            self._endpoint.close()
        for node in self.nodes:
            if node.data_dir.exists():
                self._pg_ctl("stop", "-D", str(node.data_dir), "-m", "immediate", check=False)
        if self.namespace is not None:
            self.namespace.close()
        shutil.rmtree(self.base_dir, ignore_errors=True)
        if self._reaper is not None:
            # Closing its stdin tells the reaper we cleaned up ourselves.
            with contextlib.suppress(OSError):
                assert self._reaper.stdin is not None
                self._reaper.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._reaper.wait(timeout=10)

    def _start_reaper(self) -> None:
        """A child that cleans up if we die: it waits for EOF on its stdin."""
        code = (
            "import os,subprocess,sys,shutil,glob\n"
            "sys.stdin.read()\n"
            "base, pg_ctl, prefix = sys.argv[1], sys.argv[2], sys.argv[3:]\n"
            "for pid in glob.glob(os.path.join(base, '*', 'postmaster.pid')):\n"
            "    subprocess.run(prefix + [pg_ctl, 'stop', '-D', os.path.dirname(pid),"
            " '-m', 'immediate'], capture_output=True)\n"
            "shutil.rmtree(base, ignore_errors=True)\n"
        )
        self._reaper = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                str(self.base_dir),
                str(self.bindir / "pg_ctl"),
                *self._prefix,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to our process group must not kill it first
        )

    # --- TLS ------------------------------------------------------------------

    def tls_params(self) -> dict[str, str]:
        """libpq parameters for a verified TLS session to any node or proxy on 127.0.0.1.

        Empty for a plain cluster. ``verify-full`` checks the chain up to
        :attr:`ca_file` and that the certificate names 127.0.0.1 (and localhost).
        """
        if not self.tls or self.ca_file is None:
            return {}
        return {"sslmode": "verify-full", "sslrootcert": str(self.ca_file)}

    def _make_certificates(self) -> None:
        """A throwaway CA and a server certificate for 127.0.0.1 / localhost (trustme)."""
        try:
            import trustme
        except ImportError:
            raise RuntimeError(
                "LocalCluster(tls=True) needs trustme for its certificates: "
                "pip install trustme (it is in the dev extra)."
            ) from None
        folder = self.base_dir / "tls"
        folder.mkdir()
        authority = trustme.CA()
        server = authority.issue_cert("127.0.0.1", "localhost")
        authority.cert_pem.write_to_path(str(folder / "ca.crt"))
        server.private_key_pem.write_to_path(str(folder / "server.key"))
        server.cert_chain_pems[0].write_to_path(str(folder / "server.crt"))
        # PostgreSQL refuses a key that others can read.
        os.chmod(folder / "server.key", 0o600)
        os.chmod(folder, 0o755)  # noqa: S103  certificates, no secret: the key is 0600
        for path in (folder, *folder.iterdir()):
            _chown_to_postgres(path)
        self.ca_file = folder / "ca.crt"

    # --- nodes ----------------------------------------------------------------

    @property
    def primary(self) -> Node:
        """The node that is the primary now (after a promotion, the promoted one)."""
        if self._primary is None:
            raise RuntimeError("the cluster is not started")
        return self._primary

    @property
    def endpoint(self) -> EndpointProxy:
        """An :class:`EndpointProxy` in front of the primary, made on first use.

        Like a managed database's read/write name it does not follow a promotion
        by itself: call ``cluster.endpoint.point_to(new_primary)``. Closed with
        the cluster.
        """
        with self._lock:
            if self._endpoint is None:
                self._endpoint = EndpointProxy(self.primary).start()
            return self._endpoint

    @property
    def standbys(self) -> list[Node]:
        return [node for node in self.nodes if node is not self._primary]

    def _new_node(self, name: str) -> Node:
        node = Node(self, name, free_port())
        self.nodes.append(node)
        return node

    def _place_in_namespace(self, node: Node) -> None:
        """Run ``node`` in a network namespace of its own, reached through a veth pair."""
        self.namespace = NetworkNamespace().start()
        node.namespace = self.namespace
        node.host = self.namespace.address

    def _run(
        self, args: Sequence[str], *, check: bool = True, namespace: NetworkNamespace | None = None
    ) -> subprocess.CompletedProcess[str]:
        inside = namespace.exec_prefix if namespace is not None else []
        result = subprocess.run(
            [*inside, *self._prefix, *args], capture_output=True, text=True, timeout=120, cwd="/"
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def _pg_ctl(
        self, *args: str, check: bool = True, namespace: NetworkNamespace | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.bindir / "pg_ctl"), *args], check=check, namespace=namespace)

    def _init_primary(self, node: Node) -> None:
        template = _initdb_template(self.bindir, tuple(self._prefix))
        self._run(["cp", "-a", str(template), str(node.data_dir)])
        with open(node.data_dir / "postgresql.conf", "a") as conf:
            conf.write(_SERVER_CONF)
            for key, value in self.server_settings.items():
                conf.write(f"{key} = '{value}'\n")
            if self.tls:
                conf.write(_tls_conf(self.base_dir / "tls"))
        if self.tls:
            (node.data_dir / "pg_hba.conf").write_text(_HBA_TLS_ONLY)
            _chown_to_postgres(node.data_dir / "pg_hba.conf")
        if node.namespace is not None:
            # Clients and standbys reach it from this side of the veth pair.
            with open(node.data_dir / "pg_hba.conf", "a") as hba:
                rules = _HBA_TLS_ONLY if self.tls else _HBA
                hba.write(rules.replace("127.0.0.1/32", f"{node.namespace.host_address}/32"))
        self._start_server(node)

    def _server_options(self, node: Node) -> str:
        # Per-node settings on the command line, so a base backup or a rewind
        # that copies the config files never carries another node's port.
        options = f"-p {node.port} -k {self.base_dir} -c cluster_name={node.name}"
        if node.namespace is not None:
            options += f" -c listen_addresses={node.namespace.address}"
        return options

    def _start_server(self, node: Node) -> None:
        self._pg_ctl(
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(node.data_dir),
            "-l",
            str(node.log_file),
            "-o",
            self._server_options(node),
            namespace=node.namespace,
        )
        node.wait_ready()

    def add_standby(self) -> Node:
        """A new standby from ``pg_basebackup -R`` of the current primary, streaming."""
        with self._lock:
            node = self._new_node(f"node{len(self.nodes)}")
        primary = self.primary
        self._run(
            [
                str(self.bindir / "pg_basebackup"),
                "-D",
                str(node.data_dir),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "-h",
                primary.host,
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "--no-sync",
            ]
        )
        self._start_server(node)
        self._wait_streaming(node)
        return node

    # --- faults ---------------------------------------------------------------

    def kill(self, node: Node) -> None:
        """Crash ``node``: ``pg_ctl stop -m immediate`` (no shutdown checkpoint)."""
        self._pg_ctl("stop", "-D", str(node.data_dir), "-m", "immediate", "-w")

    def stop(self, node: Node, mode: str = "fast") -> None:
        """Stop ``node`` with ``pg_ctl stop -m mode`` (smart, fast or immediate)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"mode must be smart, fast or immediate, not {mode!r}")
        self._pg_ctl("stop", "-D", str(node.data_dir), "-m", mode, "-w")

    def promote(self, node: Node, timeout: float = 30.0) -> Node:
        """Promote standby ``node``; return it once it accepts writes.

        The other standbys are pointed at it (they follow the new timeline).
        """
        self._pg_ctl("promote", "-w", "-t", str(int(timeout)), "-D", str(node.data_dir))
        deadline = time.monotonic() + timeout
        while node.role != "primary":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node} still in recovery {timeout} s after promote")
            time.sleep(0.02)
        with self._lock:
            self._primary = node
        for other in self.standbys:
            if other.is_running():
                self._follow(other, node)
        return node

    def _follow(self, standby: Node, primary: Node) -> None:
        conninfo = f"host={primary.host} port={primary.port} user=postgres"
        standby.query(
            sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(conninfo))
        )
        standby.query("SELECT pg_reload_conf()")

    def rejoin_as_standby(self, old_primary: Node, timeout: float = 60.0) -> Node:
        """Bring a crashed or stopped old primary back as a standby of the current primary.

        ``pg_rewind`` discards what the old primary wrote after the split (PG 13+
        runs crash recovery first by itself), then the node starts streaming.
        """
        if old_primary is self.primary:
            raise ValueError(f"{old_primary} is the current primary; promote another node first")
        if old_primary.namespace is not None:
            raise ValueError(
                f"{old_primary} runs in a network namespace, from where the other nodes (on "
                "127.0.0.1) cannot be reached to stream from: use a fresh cluster instead"
            )
        if old_primary.is_running():
            self.stop(old_primary, "fast")
        primary = self.primary
        # A promotion does not checkpoint, so until one runs the new primary's
        # control file still shows the old timeline and pg_rewind would say
        # "no rewind required" and leave the old primary ahead of it.
        primary.query("CHECKPOINT")
        source = f"host={primary.host} port={primary.port} user=postgres dbname=postgres"
        self._run(
            [
                str(self.bindir / "pg_rewind"),
                "-D",
                str(old_primary.data_dir),
                f"--source-server={source}",
                "-R",
                "--no-sync",
            ]
        )
        self._start_server(old_primary)
        self._wait_streaming(old_primary, timeout)
        return old_primary

    # --- replication ----------------------------------------------------------

    def set_synchronous(self, standby: Node | None, timeout: float = 30.0) -> None:
        """Make ``standby`` the synchronous standby, or turn synchronous replication off."""
        names = f'"{standby.name}"' if standby is not None else ""
        primary = self.primary
        primary.query(
            sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(sql.Literal(names))
        )
        primary.query("SELECT pg_reload_conf()")
        deadline = time.monotonic() + timeout
        while True:
            (current,) = primary.query("SHOW synchronous_standby_names")[0]
            sync = [
                row[0]
                for row in primary.query(
                    "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'"
                )
            ]
            if current == names and (standby is None or standby.name in sync):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"synchronous_standby_names={names!r} did not take effect")
            time.sleep(0.02)

    def wait_for_replay(self, standby: Node, timeout: float = 30.0) -> None:
        """Until ``standby`` has replayed everything the primary had written when called."""
        (target,) = self.primary.query("SELECT pg_current_wal_lsn()")[0]
        deadline = time.monotonic() + timeout
        while True:
            (done,) = standby.query("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [str(target)])[
                0
            ]
            if done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{standby} did not replay up to {target} in {timeout} s")
            time.sleep(0.01)

    def replicate_through(self, standby: Node, link: Any, timeout: float = 30.0) -> None:
        """Make ``standby`` stream from the primary through ``link`` (anything with host/port).

        With an :class:`EndpointProxy` as the link, ``link.delay(ms)`` makes the
        standby lag by about that much, as a slow network between the nodes would.
        """
        conninfo = (
            f"host={link.host} port={link.port} user=postgres application_name={standby.name}"
        )
        standby.query(
            sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(conninfo))
        )
        standby.query("SELECT pg_reload_conf()")
        deadline = time.monotonic() + timeout
        while not standby.query(
            "SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming' AND sender_port = %s",
            [link.port],
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{standby} does not stream through {link.host}:{link.port}")
            time.sleep(0.02)

    def _wait_streaming(self, standby: Node, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.primary.query(
                "SELECT 1 FROM pg_stat_replication WHERE application_name = %s "
                "AND state = 'streaming'",
                [standby.name],
            )
            if rows:
                return
            if time.monotonic() > deadline:
                log = standby.log_file.read_text(errors="replace")[-2000:]
                raise TimeoutError(f"{standby} is not streaming after {timeout} s. Log:\n{log}")
            time.sleep(0.02)

    def create_user(self, name: str, password: str, *, superuser: bool = False) -> None:
        """A login role with a password (scram-sha-256 over TCP)."""
        self.primary.query(
            sql.SQL(
                "CREATE ROLE {} LOGIN PASSWORD {} " + ("SUPERUSER" if superuser else "")
            ).format(sql.Identifier(name), sql.Literal(password))
        )
        self.primary.query(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(name)))
        self.primary.query(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(self.dbname), sql.Identifier(name)
            )
        )


#: Held for the life of the process: a reaper's pipe closing is its owner's death.
_TEMPLATE_REAPERS: list[Reaper] = []


@functools.cache
def _initdb_template(bindir: Path, prefix: tuple[str, ...]) -> Path:
    """Run initdb once per process; clusters copy the result (much faster than initdb)."""
    base = Path(tempfile.mkdtemp(prefix="pg-resilience-template-"))
    _chown_to_postgres(base)
    import atexit

    atexit.register(shutil.rmtree, base, True)
    # atexit does not run for a process killed from outside: the reaper removes it then.
    _TEMPLATE_REAPERS.append(Reaper(None, paths=(base,)))
    data = base / "data"
    result = subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed: {result.stderr.strip()}")
    (data / "pg_hba.conf").write_text(_HBA)
    return data
