"""Which statements may be re-run after a reconnect: reads only, judged conservatively.

A statement that was sent and lost with its connection may or may not have run.
Re-running it is safe only when running it twice changes nothing: a plain
``SELECT`` (or ``WITH ... SELECT``, ``VALUES``, ``SHOW``). Anything that could
write is not a read: data-modifying CTEs, ``SELECT ... FOR UPDATE/SHARE``
(it takes locks, and it is meant to sit in a transaction), ``SELECT ... INTO``,
and the built-in functions with side effects (sequences, advisory locks,
NOTIFY, large objects, dblink). A user function with side effects cannot be
seen from the SQL text: set ``retry_reads`` to False for an alias that calls
such functions in plain SELECTs.
"""

from __future__ import annotations

import functools
import re

__all__ = ["is_read_statement", "session_state_change"]

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_READ_START = re.compile(r"\s*\(*\s*(select|with|values|show|table)\b", re.IGNORECASE)
_WRITES = re.compile(
    r"\b(insert|update|delete|merge|truncate|copy|into|for\s+(no\s+key\s+)?update"
    r"|for\s+(key\s+)?share|nextval|setval|pg_advisory\w*|pg_notify|lo_\w+|dblink\w*"
    r"|pg_terminate_backend|pg_cancel_backend|set_config)\b",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=512)
def is_read_statement(sql: str) -> bool:
    """True when ``sql`` is a read that may be re-run on a new connection."""
    text = _COMMENTS.sub(" ", sql)
    if ";" in text.rstrip().rstrip(";"):
        return False  # several statements: judge none of them
    if not _READ_START.match(text):
        return False
    return _WRITES.search(text) is None


_SESSION_STATE = re.compile(
    r"^\s*(set\s+(?!(local|constraints|transaction)\b)|reset\b|prepare\b|listen\b|load\b|create\s+(temp|temporary)\b"
    r"|declare\b.*\bwith\s+hold\b)|\bset_config\s*\(|\bpg_(try_)?advisory_lock",
    re.IGNORECASE | re.DOTALL,
)


@functools.lru_cache(maxsize=512)
def session_state_change(sql: str) -> str | None:
    """Why ``sql`` leaves state in the session that a later read may depend on, or None."""
    text = _COMMENTS.sub(" ", sql)
    match = _SESSION_STATE.search(text)
    return None if match is None else " ".join(match.group(0).split()).lower()
