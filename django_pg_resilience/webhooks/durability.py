"""Durable acknowledgement: answer 2xx only once a standby has the commit on disk.

With asynchronous replication a commit the primary acknowledged can vanish
with it in a crash. Waiting (bounded) until a standby has flushed the WAL up to
the commit closes that window; when it is not confirmed in time the view
answers 503 and the sender's retry is deduplicated.
"""

from __future__ import annotations

import time

from django.db import connections

__all__ = ["current_wal_position", "current_wal_position_if_flushed", "wait_for_standby_flush"]

# Polling steps, in seconds. A streaming standby reports each flush at once:
# on a healthy stream the flush is confirmed a fraction of a millisecond after
# the commit (0.15-0.3 ms measured on localhost), so the first wait is short;
# the steps double from there, and a lagging standby costs few polls.
_FIRST_STEP = 0.0005
_MAX_STEP = 0.05


# The end of the WAL written so far, as a byte count. pg_current_wal_insert_lsn()
# is where the next record will go: when the last record ended exactly at a page
# boundary, that is past the next page's header (24 bytes, 40 at a segment's
# start), a position no standby reaches until more WAL is written. On a quiet
# server that would hold a confirmation until the bound, for nothing. Byte
# counts (pg_lsn - pg_lsn) keep this to PostgreSQL 13's operators.
_WRITTEN_END_SQL = (
    "SELECT pos - CASE WHEN pos % segment = 40 THEN 40 WHEN pos % page = 24 THEN 24 ELSE 0 END"
    " FROM (SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn AS pos,"
    " current_setting('wal_block_size')::numeric AS page,"
    " pg_size_bytes(current_setting('wal_segment_size')) AS segment) AS insert_position"
)

# Two constants joined: no input reaches this text. The third column says
# whether any standby streams at all (a row whose state the role may not read
# counts as streaming: without the privilege to know, assume the strict case).
_WRITTEN_END_IF_FLUSHED_SQL = (
    "SELECT end_position, EXISTS (SELECT 1 FROM pg_stat_replication"  # noqa: S608
    " WHERE flush_lsn - '0/0'::pg_lsn >= end_position),"
    " EXISTS (SELECT 1 FROM pg_stat_replication WHERE state = 'streaming' OR state IS NULL)"
    " FROM (" + _WRITTEN_END_SQL + ") AS written (end_position)"
)


def _lsn_text(position: int) -> str:
    """A WAL byte position as PostgreSQL writes an LSN (``16/B374D848``)."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def current_wal_position(using: str) -> str:
    """The end of the primary's WAL, read after the commit on the same connection.

    Taken after COMMIT it covers the commit record itself (a position read
    inside the transaction would not), plus whatever others wrote meanwhile:
    a little more than needed, never less.
    """
    with connections[using].cursor() as cursor:
        cursor.execute(_WRITTEN_END_SQL)
        return _lsn_text(int(cursor.fetchone()[0]))


def current_wal_position_if_flushed(using: str) -> tuple[str, bool, bool]:
    """:func:`current_wal_position`, whether a standby already flushed it, whether any streams.

    One round trip where the first poll of :func:`wait_for_standby_flush`
    would take a second one (the answer is yes at once with a synchronous
    standby); the position is read as :func:`current_wal_position` reads it.
    """
    with connections[using].cursor() as cursor:
        cursor.execute(_WRITTEN_END_IF_FLUSHED_SQL)
        position, flushed, streaming = cursor.fetchone()
        return _lsn_text(int(position)), bool(flushed), bool(streaming)


def _flushed_by_any_standby(using: str, lsn: str) -> bool:
    # flush_lsn is NULL for roles without pg_read_all_stats: grant it to the app's role.
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE flush_lsn >= %s::pg_lsn)",
            [lsn],
        )
        return bool(cursor.fetchone()[0])


def _flushed_by_standby_alias(standby: str, lsn: str) -> bool:
    with connections[standby].cursor() as cursor:
        cursor.execute("SELECT coalesce(pg_last_wal_receive_lsn() >= %s::pg_lsn, false)", [lsn])
        return bool(cursor.fetchone()[0])


def wait_for_standby_flush(
    using: str, lsn: str, *, timeout: float, standby: str | None = None
) -> bool:
    """True once a standby has flushed WAL up to ``lsn``; False after ``timeout`` seconds.

    ``standby`` is a DATABASES alias of a standby to ask directly
    (``pg_last_wal_receive_lsn()``); without it the primary's
    ``pg_stat_replication`` is asked for any standby's ``flush_lsn``. With a
    synchronous standby the first check already passes: the commit waited.
    """
    deadline = time.monotonic() + timeout
    step = _FIRST_STEP
    while True:
        if standby is None:
            done = _flushed_by_any_standby(using, lsn)
        else:
            done = _flushed_by_standby_alias(standby, lsn)
        if done:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(step, remaining))
        step = min(step * 2, _MAX_STEP)
