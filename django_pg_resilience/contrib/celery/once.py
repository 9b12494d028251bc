"""Run a unit of work at most once per key, whatever the queue: the job-key record.

The key row is inserted with ``INSERT ... ON CONFLICT DO NOTHING`` first thing
in the unit's transaction (the webhook inbox's pattern), so:

* a concurrent duplicate's insert waits on the primary key until the first
  run's transaction ends; if that one committed, the duplicate reads the stored
  outcome and returns it without running; if it rolled back (the body raised,
  the worker died, the primary died), the duplicate's insert goes through and
  it runs the body itself;
* a re-run after an uncertain COMMIT (the connection died during it) finds the
  row if the commit landed and runs the body if it did not: exactly once.

Nothing here knows about Celery; :mod:`.tasks` wraps it in a task, and RQ or
Django's tasks framework can call :func:`run_once` from their own job.

A key is scoped: the stored key is the scope (a task's name, by default) and
the key's parts, each length-prefixed (``"17:shop.fulfil_order,12:fulfil-order,2:42,"``),
so two tasks that produce the same parts never share a record, and
``("a:b", "c")`` is not ``("a", "b:c")``. Rows written by 0.1.0.dev0 (parts
joined with ``:``, no scope) stay valid through a compatible lookup: see
:func:`_legacy_outcome`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, router
from django.utils import timezone

from django_pg_resilience.retry import atomic_with_retry

__all__ = ["JobResult", "job_key", "run_once"]

#: The key column's width.
KEY_LIMIT = 255


@dataclass(frozen=True)
class JobResult:
    """What :func:`run_once` did: the outcome, and whether it was a stored one."""

    outcome: Any
    #: True when the unit had already committed under this key and did not run.
    replayed: bool


def _fit(key: str) -> str:
    """``key``, or its head and the SHA-256 of the whole when it is too long for the column."""
    if len(key) > KEY_LIMIT:
        digest = hashlib.sha256(key.encode()).hexdigest()
        key = f"{key[: KEY_LIMIT - len(digest) - 1]}#{digest}"
    return key


def _parts(parts: str | Sequence[Hashable]) -> tuple[str, ...]:
    values = (parts,) if isinstance(parts, str) else tuple(str(part) for part in parts)
    if not any(values):
        raise ValueError("an idempotency key must not be empty")
    return values


def job_key(parts: str | Sequence[Hashable], *, scope: str = "") -> str:
    """The stored key of ``parts`` in ``scope``: every part length-prefixed, so no two differ only
    in where a separator falls.

    ``job_key(("fulfil-order", 42), scope="shop.fulfil_order")`` is
    ``"17:shop.fulfil_order,12:fulfil-order,2:42,"``; longer than 255
    characters, the tail is replaced by the SHA-256 of the whole.
    """
    encoded = "".join(f"{len(value)}:{value}," for value in (scope, *_parts(parts)))
    return _fit(encoded)


def legacy_job_key(parts: str | Sequence[Hashable]) -> str:
    """The key 0.1.0.dev0 stored for ``parts``: joined with ``:``, no scope (ambiguous)."""
    return _fit(":".join(_parts(parts)))


def _encode(outcome: Any, key: str) -> str:
    try:
        return json.dumps(outcome, cls=DjangoJSONEncoder)
    except TypeError as exc:
        raise TypeError(
            f"The outcome of job {key!r} is not JSON-serializable ({exc}): return plain "
            "data (ids, strings, dicts), which is what a re-run gets back."
        ) from None


class _Statements(NamedTuple):
    insert: str
    stored: str
    finish: str
    legacy: str
    any_legacy: str


@functools.lru_cache(maxsize=8)
def _statements(quote: Callable[[str], str]) -> _Statements:
    from django_pg_resilience.contrib.celery.models import JobRecord

    table = quote(JobRecord._meta.db_table)
    key, task, outcome, legacy = (quote(c) for c in ("key", "task", "outcome", "legacy_key"))
    return _Statements(
        insert=(
            f"INSERT INTO {table} ({key}, {task}, {quote('recorded_at')}, {legacy}) "  # noqa: S608
            f"VALUES (%s, %s, %s, false) ON CONFLICT ({key}) DO NOTHING RETURNING 1"
        ),
        stored=f"SELECT {outcome} FROM {table} WHERE {key} = %s",  # noqa: S608
        finish=f"UPDATE {table} SET {outcome} = %s::jsonb WHERE {key} = %s",  # noqa: S608
        legacy=(
            f"SELECT {outcome} FROM {table} WHERE {key} = %s AND {legacy} "  # noqa: S608
            f"AND ({task} = %s OR %s)"
        ),
        any_legacy=f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {legacy})",  # noqa: S608
    )


#: Seconds a process trusts "this database still holds 0.1.0.dev0 keys" before
#: asking again. "It holds none" is trusted for good: no new row is ever legacy.
LEGACY_RECHECK = 600.0

_legacy_lock = threading.Lock()
#: alias -> (monotonic time of the check, legacy rows present)
_legacy_seen: dict[str, tuple[float, bool]] = {}


def _legacy_rows_present(cursor: Any, alias: str, statements: _Statements) -> bool:
    with _legacy_lock:
        seen = _legacy_seen.get(alias)
    if seen is not None and (not seen[1] or time.monotonic() - seen[0] < LEGACY_RECHECK):
        return seen[1]
    cursor.execute(statements.any_legacy)
    present = bool(cursor.fetchone()[0])
    with _legacy_lock:
        _legacy_seen[alias] = (time.monotonic(), present)
    return present


def _legacy_outcome(
    cursor: Any, alias: str, statements: _Statements, unit: _Key
) -> tuple[bool, Any]:
    """Whether 0.1.0.dev0 recorded this unit as committed, and its outcome.

    0.1.0.dev0 stored ``":".join(parts)`` with no scope. Those keys cannot be
    rewritten into the new form (the join lost where the parts began), so a
    migration could not translate them; instead, while such rows remain (they
    are pruned like any other), a new key is also looked up in its old form,
    within the same task unless the scope is shared. The cost is one indexed
    lookup per unit while old rows exist, none after.
    """
    if not _legacy_rows_present(cursor, alias, statements):
        return False, None
    cursor.execute(statements.legacy, (unit.legacy, unit.name[:255], unit.shared))
    row = cursor.fetchone()
    return (row is not None), (row[0] if row else None)


@dataclass(frozen=True)
class _Key:
    """A unit's key: stored form, 0.1.0.dev0 form, and who it belongs to."""

    stored: str
    legacy: str
    name: str
    #: The scope is not the task's own: old rows of any task count.
    shared: bool


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _unit(
    unit: _Key,
    func: Callable[..., Any],
    using: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> JobResult:
    connection = connections[using]
    statements = _statements(connection.ops.quote_name)
    with connection.cursor() as cursor:
        cursor.execute(statements.insert, (unit.stored, unit.name[:255], timezone.now()))
        if cursor.fetchone() is None:
            cursor.execute(statements.stored, (unit.stored,))
            row = cursor.fetchone()
            return JobResult(_decoded(row[0] if row else None), True)
        found, value = _legacy_outcome(cursor, using, statements, unit)
        if found:
            # Committed before the upgrade: keep the answer under the new key too.
            if value is not None:
                cursor.execute(statements.finish, (json.dumps(_decoded(value)), unit.stored))
            return JobResult(_decoded(value), True)
    outcome = func(*args, **kwargs)
    if outcome is not None:
        # Written in the body's transaction: the outcome a re-run gets back is
        # the one of the writes that committed.
        with connection.cursor() as cursor:
            cursor.execute(statements.finish, (_encode(outcome, unit.stored), unit.stored))
    return JobResult(outcome, False)


def run_once(
    key: str | Sequence[Hashable],
    func: Callable[..., Any],
    /,
    *args: Any,
    using: str | None = None,
    name: str = "",
    scope: str | None = None,
    **kwargs: Any,
) -> JobResult:
    """Run ``func(*args, **kwargs)`` in ``atomic_with_retry`` unless ``key`` already committed.

    The key record and ``func``'s writes on ``using`` commit together or not at
    all; the outcome (JSON) is stored with them and returned to every later run
    of the same key. ``func`` must write only to ``using`` (a write elsewhere is
    not covered by the key). Availability errors that outlast atomic_with_retry's
    deadline propagate: the caller's queue retries the job later, which is safe.

    ``name`` (the task's name) is stored with the record, and the key is scoped
    to it: the same key under another name is another unit. ``scope`` names a
    scope shared on purpose (several tasks, one unit per key); "" is global.
    """
    from django_pg_resilience.contrib.celery.models import JobRecord

    alias = using or router.db_for_write(JobRecord) or "default"
    scope = name if scope is None else scope
    unit = _Key(job_key(key, scope=scope), legacy_job_key(key), name, shared=scope != name)
    # The key record makes the unit idempotent: after a COMMIT whose fate is
    # unknown the unit may run again; it finds the key if the commit landed.
    run = atomic_with_retry(_unit, using=alias, idempotent=True)
    return run(unit, func, alias, args, kwargs)
