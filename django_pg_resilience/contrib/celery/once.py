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
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def job_key(parts: str | Sequence[Hashable]) -> str:
    """``("fulfil-order", 42)`` -> ``"fulfil-order:42"``; longer than 255 -> hashed tail."""
    key = parts if isinstance(parts, str) else ":".join(str(part) for part in parts)
    if not key:
        raise ValueError("an idempotency key must not be empty")
    if len(key) > KEY_LIMIT:
        digest = hashlib.sha256(key.encode()).hexdigest()
        key = f"{key[: KEY_LIMIT - len(digest) - 1]}#{digest}"
    return key


def _encode(outcome: Any, key: str) -> str:
    try:
        return json.dumps(outcome, cls=DjangoJSONEncoder)
    except TypeError as exc:
        raise TypeError(
            f"The outcome of job {key!r} is not JSON-serializable ({exc}): return plain "
            "data (ids, strings, dicts), which is what a re-run gets back."
        ) from None


@functools.lru_cache(maxsize=8)
def _statements(quote: Callable[[str], str]) -> tuple[str, str, str]:
    from django_pg_resilience.contrib.celery.models import JobRecord

    table = quote(JobRecord._meta.db_table)
    insert = (
        f"INSERT INTO {table} ({quote('key')}, {quote('task')}, {quote('recorded_at')}) "  # noqa: S608
        f"VALUES (%s, %s, %s) ON CONFLICT ({quote('key')}) DO NOTHING RETURNING 1"
    )
    stored = f"SELECT {quote('outcome')} FROM {table} WHERE {quote('key')} = %s"  # noqa: S608
    finish = f"UPDATE {table} SET {quote('outcome')} = %s::jsonb WHERE {quote('key')} = %s"  # noqa: S608
    return insert, stored, finish


def _unit(
    key: str,
    name: str,
    func: Callable[..., Any],
    using: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> JobResult:
    connection = connections[using]
    insert, stored, finish = _statements(connection.ops.quote_name)
    with connection.cursor() as cursor:
        cursor.execute(insert, (key, name[:255], timezone.now()))
        if cursor.fetchone() is None:
            cursor.execute(stored, (key,))
            row = cursor.fetchone()
            value = row[0] if row else None
            return JobResult(json.loads(value) if isinstance(value, str) else value, True)
    outcome = func(*args, **kwargs)
    if outcome is not None:
        # Written in the body's transaction: the outcome a re-run gets back is
        # the one of the writes that committed.
        with connection.cursor() as cursor:
            cursor.execute(finish, (_encode(outcome, key), key))
    return JobResult(outcome, False)


def run_once(
    key: str | Sequence[Hashable],
    func: Callable[..., Any],
    /,
    *args: Any,
    using: str | None = None,
    name: str = "",
    **kwargs: Any,
) -> JobResult:
    """Run ``func(*args, **kwargs)`` in ``atomic_with_retry`` unless ``key`` already committed.

    The key record and ``func``'s writes on ``using`` commit together or not at
    all; the outcome (JSON) is stored with them and returned to every later run
    of the same key. ``func`` must write only to ``using`` (a write elsewhere is
    not covered by the key). Availability errors that outlast atomic_with_retry's
    deadline propagate: the caller's queue retries the job later, which is safe.
    """
    from django_pg_resilience.contrib.celery.models import JobRecord

    alias = using or router.db_for_write(JobRecord) or "default"
    # The key record makes the unit idempotent: after a COMMIT whose fate is
    # unknown the unit may run again; it finds the key if the commit landed.
    unit = atomic_with_retry(_unit, using=alias, idempotent=True)
    return unit(job_key(key), name, func, alias, args, kwargs)
