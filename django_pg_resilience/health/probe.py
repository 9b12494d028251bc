"""Facts about one server, read with plain psycopg under a hard time bound.

The probe never goes through the Django backend (no retries, no breaker: the
report must say what the server does now). Each probe runs in a daemon thread
and :func:`probe_all` stops waiting at the deadline, so a blackholed node costs
at most ``timeout`` seconds and never keeps the process alive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from django_pg_resilience import stats
from django_pg_resilience.health.targets import Target

__all__ = ["NodeFacts", "connect_params", "probe", "probe_all"]

APPLICATION_NAME = "django-pg-resilience-health"


@dataclasses.dataclass
class NodeFacts:
    """What a probe learnt; ``None`` where the server did not say."""

    reachable: bool = False
    error: str | None = None
    connect_seconds: float | None = None
    server_version: str | None = None
    role: str | None = None
    timeline: int | None = None
    connections_used: int | None = None
    connections_max: int | None = None
    oldest_transaction_seconds: float | None = None
    synchronous_commit: str | None = None
    synchronous_standby_names: str | None = None
    # On a primary: one dict per row of pg_stat_replication / pg_replication_slots.
    standbys: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    slots: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # On a standby.
    receive_lsn: str | None = None
    replay_lsn: str | None = None
    replay_delay_seconds: float | None = None
    replay_lag_bytes: int | None = None
    replay_paused: bool | None = None
    wal_receiver_status: str | None = None
    sender: str | None = None
    #: Sections the server refused or that failed ("replication: permission denied").
    query_errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def connections_ratio(self) -> float | None:
        if self.connections_used is None or not self.connections_max:
            return None
        return self.connections_used / self.connections_max


def connect_params(params: dict[str, Any] | Any, timeout: float) -> dict[str, Any]:
    """libpq parameters for a probe of ``timeout`` seconds: bounded connect, statements, TCP."""
    conn = dict(params)
    # The probe reports on this very host, whatever its role; one host per probe.
    for key in ("target_session_attrs", "load_balance_hosts"):
        conn.pop(key, None)
    millis = max(1, int(timeout * 1000))
    conn["connect_timeout"] = max(2, math.ceil(timeout))  # libpq's minimum is 2 s
    conn["application_name"] = APPLICATION_NAME
    conn["options"] = " ".join(
        part
        for part in (
            str(conn.get("options") or ""),
            f"-c statement_timeout={millis}",
            f"-c lock_timeout={millis}",
        )
        if part
    )
    # A thread left behind at the deadline must end by itself: the kernel gives
    # up on a silent peer instead of waiting for minutes.
    conn["keepalives"] = 1
    conn["keepalives_idle"] = max(1, math.ceil(timeout))
    conn["keepalives_interval"] = 1
    conn["keepalives_count"] = 3
    conn["tcp_user_timeout"] = millis + 1000
    return conn


_BASICS = """
SELECT pg_is_in_recovery(),
       current_setting('max_connections')::int,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
       (SELECT EXTRACT(EPOCH FROM clock_timestamp() - min(xact_start))::float8
          FROM pg_stat_activity
         WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
           AND backend_type = 'client backend'),
       current_setting('synchronous_commit'),
       current_setting('synchronous_standby_names')
"""

# The timeline of the WAL being written now (a checkpoint's timeline lags a promotion).
_PRIMARY_TIMELINE = (
    "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
)

_REPLICATION = """
SELECT application_name, host(client_addr), state, sync_state,
       EXTRACT(EPOCH FROM write_lag)::float8,
       EXTRACT(EPOCH FROM flush_lag)::float8,
       EXTRACT(EPOCH FROM replay_lag)::float8,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
       replay_lsn::text
  FROM pg_stat_replication
 ORDER BY application_name, client_addr
"""

_SLOTS = """
SELECT slot_name, slot_type, active, wal_status,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
  FROM pg_replication_slots
 ORDER BY slot_name
"""

# Replay delay with the idle-primary guard: nothing left to replay means no delay,
# however long ago the last transaction was.
_RECOVERY = """
SELECT pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
            THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8
       END,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint,
       pg_is_wal_replay_paused()
"""

_WAL_RECEIVER = """
SELECT status, sender_host, sender_port, received_tli FROM pg_stat_wal_receiver
"""

_STANDBY_TIMELINE = "SELECT timeline_id FROM pg_control_checkpoint()"

# Without pg_read_all_stats these views show a row with its columns NULL.
_HIDDEN = "{view}: columns hidden from this user (insufficient privilege)"


def _read_basics(cur: psycopg.Cursor[Any], facts: NodeFacts) -> None:
    row = cur.execute(_BASICS).fetchone()
    assert row is not None
    in_recovery, facts.connections_max, facts.connections_used = row[0], row[1], row[2]
    facts.role = "standby" if in_recovery else "primary"
    facts.oldest_transaction_seconds = row[3]
    facts.synchronous_commit, facts.synchronous_standby_names = row[4], row[5]


def _read_primary(cur: psycopg.Cursor[Any], facts: NodeFacts) -> None:
    row = cur.execute(_PRIMARY_TIMELINE).fetchone()
    facts.timeline = row[0] if row else None


def _read_replication(cur: psycopg.Cursor[Any], facts: NodeFacts) -> None:
    facts.standbys = [
        {
            "application_name": r[0],
            "client_addr": r[1],
            "state": r[2],
            "sync_state": r[3],
            "write_lag_seconds": r[4],
            "flush_lag_seconds": r[5],
            "replay_lag_seconds": r[6],
            "replay_lag_bytes": r[7],
            "replay_lsn": r[8],
        }
        for r in cur.execute(_REPLICATION).fetchall()
    ]
    if any(standby["state"] is None for standby in facts.standbys):
        facts.query_errors.append(_HIDDEN.format(view="pg_stat_replication"))


def _read_slots(cur: psycopg.Cursor[Any], facts: NodeFacts) -> None:
    facts.slots = [
        {
            "slot_name": r[0],
            "slot_type": r[1],
            "active": r[2],
            "wal_status": r[3],
            "retained_bytes": r[4],
        }
        for r in cur.execute(_SLOTS).fetchall()
    ]


def _read_recovery(cur: psycopg.Cursor[Any], facts: NodeFacts) -> None:
    row = cur.execute(_RECOVERY).fetchone()
    assert row is not None
    facts.receive_lsn, facts.replay_lsn, facts.replay_delay_seconds = row[0], row[1], row[2]
    facts.replay_lag_bytes, facts.replay_paused = row[3], row[4]


def _read_wal_receiver(cur: psycopg.Cursor[Any], facts: NodeFacts) -> None:
    row = cur.execute(_WAL_RECEIVER).fetchone()
    if row is None:  # no row: the WAL receiver is not running
        facts.wal_receiver_status = "stopped"
        return
    if row[0] is None:
        facts.query_errors.append(_HIDDEN.format(view="pg_stat_wal_receiver"))
        return
    facts.wal_receiver_status = row[0]
    if row[1]:
        facts.sender = f"{row[1]}:{row[2]}"
    facts.timeline = row[3]


def _read_standby_timeline(cur: psycopg.Cursor[Any], facts: NodeFacts) -> None:
    if facts.timeline is None:
        row = cur.execute(_STANDBY_TIMELINE).fetchone()
        facts.timeline = row[0] if row else None


_Section = Callable[[psycopg.Cursor[Any], NodeFacts], None]
_PRIMARY_SECTIONS: dict[str, _Section] = {
    "timeline": _read_primary,
    "replication": _read_replication,
    "slots": _read_slots,
}
_STANDBY_SECTIONS: dict[str, _Section] = {
    "recovery": _read_recovery,
    "wal_receiver": _read_wal_receiver,
    "timeline": _read_standby_timeline,
}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


class _Abandon:
    """Lets :func:`probe_all` cut loose a probe it no longer waits for."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    def watch(self, conn: psycopg.Connection[Any]) -> bool:
        """Hold a duplicate of ``conn``'s socket; False when the deadline has passed already.

        The duplicate keeps the socket itself alive, so :meth:`abandon` can never
        hit a descriptor number the probe has closed and another socket reused.
        """
        with self._lock:
            if self.event.is_set():
                return False
            with contextlib.suppress(OSError, psycopg.Error):
                self._sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
            return True

    def release(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def abandon(self) -> None:
        # Shutting the socket down wakes the probe blocked on it with an error;
        # closing its connection from this thread would race with it.
        with self._lock:
            self.event.set()
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)


def probe(target: Target, timeout: float, abandon: _Abandon | None = None) -> NodeFacts:
    """Connect to ``target`` and read its facts; connection errors are facts, not raised."""
    facts = NodeFacts()
    started = time.monotonic()
    stats.increment("health_probe_connections", target.group)
    try:
        conn = psycopg.connect(**connect_params(target.params, timeout), autocommit=True)
    except psycopg.Error as exc:
        facts.error = target.scrub(_first_line(exc))
        return facts
    if abandon is not None and not abandon.watch(conn):
        conn.close()  # connected after the deadline: nobody is waiting
        facts.error = "abandoned at the deadline"
        return facts
    try:
        facts.reachable = True
        facts.connect_seconds = time.monotonic() - started
        with conn:
            _read_all(conn, target, facts, abandon)
    finally:
        if abandon is not None:
            abandon.release()
    return facts


def _read_all(
    conn: psycopg.Connection[Any], target: Target, facts: NodeFacts, abandon: _Abandon | None
) -> None:
    facts.server_version = conn.info.parameter_status("server_version")
    _run_section(conn, target, facts, "basics", _read_basics)
    sections: dict[str, _Section] = {}
    if facts.role == "primary":
        sections = _PRIMARY_SECTIONS
    elif facts.role == "standby":
        sections = _STANDBY_SECTIONS
    for name, section in sections.items():
        if conn.closed or (abandon is not None and abandon.event.is_set()):
            break
        _run_section(conn, target, facts, name, section)
    if conn.broken or conn.closed:
        facts.reachable = False
        facts.error = facts.error or "the connection was lost during the probe"


def _run_section(
    conn: psycopg.Connection[Any], target: Target, facts: NodeFacts, name: str, section: _Section
) -> None:
    try:
        with conn.cursor() as cur:
            section(cur, facts)
    except psycopg.Error as exc:
        facts.query_errors.append(f"{name}: {target.scrub(_first_line(exc))}")
        if conn.broken:
            facts.error = f"the connection was lost during the probe ({name})"


def probe_all(targets: Sequence[Target], timeout: float) -> list[NodeFacts]:
    """Probe every target in parallel; any probe still running after ``timeout`` s is unreachable.

    Daemon threads, not an executor: a probe stuck on a silent socket must not
    keep the interpreter from exiting (executors join their workers at exit).
    """
    results: list[NodeFacts | None] = [None] * len(targets)
    finished = [threading.Event() for _ in targets]
    abandons = [_Abandon() for _ in targets]

    def work(index: int, target: Target) -> None:
        try:
            results[index] = probe(target, timeout, abandons[index])
        except Exception as exc:  # a bug must not hide the other nodes' report
            results[index] = NodeFacts(
                error=target.scrub(f"probe failed: {exc.__class__.__name__}: {_first_line(exc)}")
            )
        finally:
            finished[index].set()

    for index, target in enumerate(targets):
        threading.Thread(
            target=work, args=(index, target), name=f"health-probe-{target.name}", daemon=True
        ).start()
    deadline = time.monotonic() + timeout
    for event in finished:
        event.wait(max(0.0, deadline - time.monotonic()))
    # Decide who timed out before cutting anyone loose: a cut probe finishes
    # at once, with an error that is not the reason it failed.
    answered = [
        facts if event.is_set() else None for facts, event in zip(results, finished, strict=True)
    ]
    for facts, abandon in zip(answered, abandons, strict=True):
        if facts is None:
            abandon.abandon()
    return [
        facts
        if facts is not None
        else NodeFacts(error=f"no answer within {timeout:g} s (timed out)")
        for facts in answered
    ]
