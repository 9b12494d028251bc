"""Exactly-once processing of a verified delivery: inline, queued, or by the worker.

The unique ``(source, key)`` index does the work. The event row is inserted
with ``INSERT ... ON CONFLICT DO NOTHING`` inside the transaction that runs the
handler, so:

* a concurrent duplicate's insert waits on the index until the first delivery's
  transaction ends; if that one committed, the duplicate finds a succeeded row
  and answers "duplicate"; if it rolled back (the handler raised, the primary
  died), the duplicate's insert goes through and it processes the event itself;
* a failed or pending row is locked ``FOR UPDATE`` and processed under the lock,
  so two retries of a failed event cannot both run the handler.

A second unique index, on ``(source, body_sha256, account, topic)`` where the
digest is set, makes a signed body replayed under a fresh (unsigned) delivery
id, for the same account and topic, a duplicate of the first. The same body
under another account or topic is a new event (a sender fires several topics
with one body), flagged ``body_replayed``; a view with ``dedup_body_strict``
treats it as a duplicate instead (a third index keeps its rows unique per
body). ``ON CONFLICT DO NOTHING`` names no index, so any conflict leaves the
insert to the duplicate path.

One statement (:func:`_store`) inserts the row and, when it conflicts, says
what is stored already: a duplicate of a succeeded event costs no second
statement. Waiting on an in-flight delivery is bounded by ``lock_timeout``
(``WEBHOOK_LOCK_TIMEOUT``), set for the transaction by that statement itself
(no extra round trip); when it expires :class:`DeliveryInFlight` is raised and
the view answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import functools
import json
import logging
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.db import DataError, OperationalError, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from django_pg_resilience import conf
from django_pg_resilience.errors import sqlstate_of
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.webhooks.exceptions import DeliveryInFlight, bad_request
from django_pg_resilience.webhooks.registry import WebhookView, load_handler, load_view

__all__ = [
    "Delivery",
    "Outcome",
    "Stored",
    "describe_error",
    "enqueue",
    "load_handler",
    "load_view",
    "process_inline",
    "record_failure",
    "run_handler",
]

logger = logging.getLogger("django_pg_resilience.webhooks")

#: Longest ``last_error`` kept, in characters.
ERROR_LIMIT = 2000

#: lock_not_available: the in-flight delivery held the row past lock_timeout.
_LOCK_NOT_AVAILABLE = "55P03"

Status = WebhookEvent.Status


class Outcome(enum.Enum):
    """What became of a delivery (the ``status`` of a 200 response)."""

    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    QUEUED = "queued"


@dataclass(frozen=True)
class Stored:
    """What became of a delivery, and the session its write committed on.

    ``session`` is the driver connection that ran the COMMIT (or the autocommit
    statement). It is taken inside the unit of work: once the transaction is
    closed, Django may already have replaced a connection found dead (restoring
    autocommit reconnects), and a durable acknowledgement asked over that new
    session, possibly on a new primary, would confirm a commit it never saw.
    """

    outcome: Outcome
    session: Any
    #: The body was already stored for the source under another account or topic.
    replayed: bool = False
    #: The queued event's id (QUEUED only), for the hand-over to a task queue.
    pk: int | None = None


def _session(using: str) -> Any:
    return connections[using].connection


@dataclass(frozen=True)
class Delivery:
    """A verified delivery, ready to be stored."""

    source: str
    key: str
    payload: Any
    topic: str = ""
    account: str = ""
    event_id: str = ""
    triggered_at: datetime.datetime | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    handler: str = ""
    #: Hex SHA-256 of the raw body, or "" when the view does not deduplicate by body.
    body_sha256: str = ""
    #: The strict rule (``dedup_body_strict``): the body is a duplicate under any account or topic.
    body_strict: bool = False
    #: ``payload`` as JSON text (the raw body when it is UTF-8), stored as is: "" serialises it.
    payload_json: str = ""


def view_secrets(view: WebhookView) -> list[str]:
    """The view's secrets, to mask them in errors; none if it cannot say."""
    try:
        return [secret for secret in view.get_secrets() if isinstance(secret, str)]
    except Exception:
        return []


def _masked_forms(secrets: Sequence[str]) -> list[str]:
    # A secret is often used stripped (an environment variable with a trailing
    # newline): the form the error shows may be either. Longest first, so the
    # padded form is masked whole before its stripped core.
    forms = {form for secret in secrets for form in (secret, secret.strip()) if form}
    return sorted(forms, key=len, reverse=True)


def describe_error(
    exc: BaseException, secrets: Sequence[str] = (), *, with_traceback: bool = False
) -> str:
    """``Type: message``, truncated, with every secret masked (for ``last_error`` and logs)."""
    if with_traceback:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    else:
        text = f"{type(exc).__name__}: {exc}"
    for secret in _masked_forms(secrets):
        text = text.replace(secret, "***")
    if not with_traceback and len(text) > ERROR_LIMIT:
        text = text[: ERROR_LIMIT - 1] + "…"
    return text


# --- the one statement: store the event, or say what is stored -------------------------


@dataclass(frozen=True)
class _Seen:
    """What :func:`_store` found: the new row, or the stored one it conflicted with."""

    pk: int | None
    #: None: the row is new. A status: the stored row's, read without a lock.
    status: str | None
    #: The body is stored under another account or topic (a new row's flag, or
    #: the stored row the strict rule matched).
    replayed: bool = False

    @property
    def is_new(self) -> bool:
        return self.pk is not None and self.status is None


class _StrictReplay(Exception):
    """Rolls back a new row whose body the strict rule makes a duplicate."""

    def __init__(self, session: Any) -> None:
        super().__init__("the body was already stored under another account or topic")
        self.session = session


@contextlib.contextmanager
def _bound_cursor(using: str) -> Iterator[Any]:
    """Django's cursor (the backend's recovery, error translation) binding on the server.

    The body travels as a parameter rather than quoted into the SQL text (no
    escaping here, no parsing of a long literal there), and psycopg prepares
    the statement where the connection keeps prepared statements (its
    ``prepare_threshold``, ``OPTIONS["prepare_threshold"]``: Django leaves it
    None, which PgBouncer in transaction mode needs).
    """
    connection = connections[using]
    with connection.cursor() as cursor:
        client_side = cursor.cursor
        cursor.cursor = psycopg.Cursor(connection.connection)
        client_side.close()
        yield cursor


def _store(
    delivery: Delivery,
    using: str,
    *,
    status: str,
    attempts: int = 0,
    last_error: str = "",
) -> _Seen:
    """Insert the event row unless it is stored already; what was found.

    ``ON CONFLICT DO NOTHING`` waits for an in-flight insert of the same key
    to commit or roll back, which is what orders concurrent duplicates. The
    conflicting row is read in the same statement, with the statement's
    snapshot: a row committed while the insert waited is not in it, and
    ``_Seen(None, None)`` says so (the caller looks again).
    """
    connection = connections[using]
    # The ORM's per-field preparation is skipped on this hot path: the text and
    # integer columns take their values as they are, the JSON columns take JSON
    # text (cast to jsonb in the SQL); only the timestamps go through their
    # field, which handles naive values and USE_TZ as the ORM would.
    prepare_datetime = _datetime_field().get_db_prep_save
    received_at = prepare_datetime(timezone.now(), connection)
    params = {
        "source": delivery.source,
        "key": delivery.key,
        "event_id": delivery.event_id,
        "topic": delivery.topic,
        "account": delivery.account,
        "status": status,
        "attempts": attempts,
        "received_at": received_at,
        "processed_at": received_at if status == Status.SUCCEEDED else None,
        "next_attempt_at": received_at if status == Status.PENDING else None,
        "triggered_at": prepare_datetime(delivery.triggered_at, connection),
        "last_error": last_error,
        "payload": delivery.payload_json or json.dumps(delivery.payload),
        "headers": json.dumps(dict(delivery.headers)),
        "handler": delivery.handler,
        "body_sha256": delivery.body_sha256,
        "body_strict": delivery.body_strict,
        "lock_timeout": _lock_timeout(),
    }
    try:
        with _bound_cursor(using) as cursor:
            cursor.execute(_store_sql(connection.ops.quote_name), params)
            row = cursor.fetchone()
    except DataError:
        # Valid JSON PostgreSQL cannot store (a NUL character, a huge number):
        # no retry would ever succeed, so it is refused like malformed JSON.
        # Raising leaves the caller's atomic block (if any), which rolls back.
        raise bad_request("unstorable_payload") from None
    except OperationalError as exc:
        _raise_if_in_flight(exc, delivery)
        raise
    if row is None:
        return _Seen(None, None)
    return _Seen(int(row[0]), row[1], bool(row[2]))


def _lock_timeout() -> str:
    """``lock_timeout`` for PostgreSQL, in milliseconds (``"0"`` waits without bound)."""
    return str(max(0, round(conf.app_settings().WEBHOOK_LOCK_TIMEOUT * 1000)))


def _raise_if_in_flight(exc: BaseException, delivery: Delivery) -> None:
    if sqlstate_of(exc) == _LOCK_NOT_AVAILABLE:
        raise DeliveryInFlight(delivery.source, delivery.key) from None


#: The columns :func:`_store` fills from its parameters of the same names.
_INSERT_COLUMNS = (
    "source",
    "key",
    "event_id",
    "topic",
    "account",
    "status",
    "attempts",
    "received_at",
    "processed_at",
    "next_attempt_at",
    "triggered_at",
    "last_error",
    "payload",
    "headers",
    "handler",
    "body_sha256",
    "body_strict",
)
_JSON_COLUMNS = frozenset({"payload", "headers"})
_TEXT_COLUMNS = frozenset(
    {"source", "key", "event_id", "topic", "account", "status", "last_error", "handler"}
    | {"body_sha256"}
)


def _fields() -> dict[str, Any]:
    return {f.name: f for f in WebhookEvent._meta.concrete_fields}


@functools.cache
def _datetime_field() -> Any:
    return WebhookEvent._meta.get_field("received_at")


#: Text parameters are typed in every place they appear: bound on the server,
#: an untyped one used twice could be read as varchar in one and text in the other.
_SOURCE, _KEY, _DIGEST = "%(source)s::text", "%(key)s::text", "%(body_sha256)s::text"
_LOCK_TIMEOUT = "left(set_config('lock_timeout', %(lock_timeout)s::text, true), 0)"


def _same_event_sql(column: Callable[[str], str]) -> str:
    """The stored row(s) a delivery duplicates: same key, or same body in its scope."""
    return (
        f"{column('source')} = {_SOURCE} AND ({column('key')} = {_KEY} OR ("
        f"{column('body_sha256')} = {_DIGEST} AND {column('body_sha256')} <> '' AND "
        f"(%(body_strict)s OR ({column('account')} = %(account)s::text "
        f"AND {column('topic')} = %(topic)s::text))))"
    )


@functools.lru_cache(maxsize=8)
def _store_sql(quote: Callable[[str], str]) -> str:
    fields = _fields()

    def column(name: str) -> str:
        return quote(str(fields[name].column))

    table = quote(WebhookEvent._meta.db_table)
    columns = ", ".join(column(name) for name in (*_INSERT_COLUMNS, "body_replayed"))
    values = [
        f"%({name})s::text::jsonb"
        if name in _JSON_COLUMNS
        else f"%({name})s::text"
        if name in _TEXT_COLUMNS
        else f"%({name})s"
        for name in _INSERT_COLUMNS
    ]
    # One value also sets lock_timeout for the transaction: the VALUES row is
    # computed before the insert may wait on an in-flight duplicate, so the
    # bound applies to that wait, at no extra round trip. left(..., 0) is "".
    digest = _INSERT_COLUMNS.index("body_sha256")
    values[digest] += f" || {_LOCK_TIMEOUT}"
    # Seen under another account or topic (a same-scope row would conflict).
    values.append(
        f"EXISTS (SELECT FROM {table} WHERE {column('source')} = {_SOURCE} "
        f"AND {column('body_sha256')} = {_DIGEST} AND {column('body_sha256')} <> '')"
    )
    pk, status = column("id"), column("status")
    # The strict rule's conflict: the stored row has the body under another scope.
    elsewhere = (
        f"({column('key')} <> {_KEY} AND ({column('account')} <> %(account)s::text "
        f"OR {column('topic')} <> %(topic)s::text))"
    )
    # No conflict target: the key's and the body's unique indexes both make
    # the delivery a duplicate. The second branch runs only when nothing was
    # inserted; it prefers the key's row to a row of the same body.
    return (
        f"WITH new AS (INSERT INTO {table} ({columns}) "  # noqa: S608
        f"VALUES ({', '.join(values)}) ON CONFLICT DO NOTHING "
        f"RETURNING {pk}, {column('body_replayed')}) "
        f"SELECT {pk}, NULL, {column('body_replayed')} FROM new UNION ALL "
        f"(SELECT {pk}, {status}, {elsewhere} FROM {table} WHERE NOT EXISTS (SELECT FROM new) "
        f"AND {_same_event_sql(column)} ORDER BY {column('key')} <> {_KEY} LIMIT 1)"
    )


def _event_from(pk: int, delivery: Delivery, using: str, replayed: bool) -> WebhookEvent:
    """The row just inserted by :func:`process_inline`, without reading it back."""
    # Positional values in field order take Model.__init__'s fast path (no
    # keyword matching), and from_db marks the instance as saved in ``using``.
    values = _event_values(pk, delivery, replayed)
    return WebhookEvent.from_db(using, _concrete_names(), values)


@functools.cache
def _concrete_names() -> tuple[str, ...]:
    return tuple(f.attname for f in WebhookEvent._meta.concrete_fields)


def _event_values(pk: int, delivery: Delivery, replayed: bool) -> list[Any]:
    now = timezone.now()
    row = {
        "id": pk,
        "source": delivery.source,
        "key": delivery.key,
        "event_id": delivery.event_id,
        "topic": delivery.topic,
        "account": delivery.account,
        "status": Status.SUCCEEDED,
        "attempts": 1,
        "received_at": now,
        "processed_at": now,
        "next_attempt_at": None,
        "triggered_at": delivery.triggered_at,
        "last_error": "",
        "payload": delivery.payload,
        "headers": dict(delivery.headers),
        "handler": delivery.handler,
        "body_sha256": delivery.body_sha256,
        "body_replayed": replayed,
        "body_strict": delivery.body_strict,
        "locked_until": None,
    }
    return [row[name] for name in _concrete_names()]


def run_handler(
    event: WebhookEvent,
    handle: Callable[[WebhookEvent], None],
    using: str,
    *,
    count_attempt: bool = True,
) -> None:
    """Run ``handle(event)`` and mark the event succeeded, in the caller's transaction.

    The event already says succeeded while ``handle`` runs (as the row of a
    new inline event does): it commits so only together with the handler's writes.
    """
    if count_attempt:
        event.attempts += 1
    event.status = Status.SUCCEEDED
    event.processed_at = timezone.now()
    event.next_attempt_at = None
    event.locked_until = None
    event.last_error = ""
    handle(event)
    event.save(
        using=using,
        update_fields=[
            "status",
            "attempts",
            "processed_at",
            "next_attempt_at",
            "locked_until",
            "last_error",
        ],
    )


def process_inline(
    delivery: Delivery, handle: Callable[[WebhookEvent], None], using: str
) -> Stored:
    """Store the event and run ``handle`` in one transaction; DUPLICATE if it already succeeded.

    An exception from ``handle`` (or from the database) rolls everything back
    and propagates: the caller records a handler failure with
    :func:`record_failure`, or answers 503 for an availability error.
    """
    try:
        return _process_inline(delivery, handle, using)
    except _StrictReplay as replay:
        return Stored(Outcome.DUPLICATE, replay.session, replayed=True)


def _process_inline(
    delivery: Delivery, handle: Callable[[WebhookEvent], None], using: str
) -> Stored:
    # Inside the block the session cannot change (a lost connection fails the
    # transaction), so the one read there is the one COMMIT runs on. No
    # savepoint: a handler error rolls back to nothing worth keeping (the
    # failure is recorded afterwards, in a transaction of its own).
    with transaction.atomic(using=using):
        # A new event is inserted already marked succeeded: nobody sees the
        # row before COMMIT, and if handle() raises it rolls back with the
        # handler's writes. One statement fewer than insert-then-update.
        seen = _store(delivery, using, status=Status.SUCCEEDED, attempts=1)
        if seen.is_new:
            assert seen.pk is not None
            if seen.replayed and delivery.body_strict:
                raise _StrictReplay(_session(using))  # rolls the row back
            handle(_event_from(seen.pk, delivery, using, seen.replayed))
            return Stored(Outcome.PROCESSED, _session(using), replayed=seen.replayed)
        if seen.status == Status.SUCCEEDED:
            return Stored(Outcome.DUPLICATE, _session(using), replayed=seen.replayed)
        event = _locked_existing(delivery, using, seen.pk)
        if event is None or event.status == Status.SUCCEEDED:
            return Stored(Outcome.DUPLICATE, _session(using))
        # A failed or still-pending event: this delivery processes it now,
        # under the row lock (the async worker skips locked rows).
        run_handler(event, handle, using)
        session = _session(using)
    return Stored(Outcome.PROCESSED, session)


def _same_event(delivery: Delivery) -> Q:
    """The stored row(s) ``delivery`` duplicates: same key, or same body in its scope."""
    same = Q(key=delivery.key)
    if delivery.body_sha256:
        body = Q(body_sha256=delivery.body_sha256)
        if not delivery.body_strict:
            body &= Q(account=delivery.account, topic=delivery.topic)
        same |= body
    return Q(source=delivery.source) & same


def _locked_existing(delivery: Delivery, using: str, pk: int | None) -> WebhookEvent | None:
    """The row the insert conflicted with, locked; the key's row first. None if pruned since.

    ``pk``: the row :func:`_store` read (None when it saw none: the row
    committed while the insert waited on it).
    """
    same = Q(pk=pk) if pk is not None else _same_event(delivery)
    try:
        rows = list(WebhookEvent.objects.using(using).select_for_update().filter(same)[:2])
    except OperationalError as exc:
        _raise_if_in_flight(exc, delivery)
        raise
    rows.sort(key=lambda row: row.key != delivery.key)
    return rows[0] if rows else None


def enqueue(delivery: Delivery, using: str) -> Stored:
    """Store the event as pending for ``manage.py process_webhooks``.

    QUEUED for a new event, and for a failed one (a sender's retry re-arms it);
    DUPLICATE when it is already pending, being processed, or done.
    """
    if not (delivery.body_strict and delivery.body_sha256):
        return _enqueue(delivery, using)
    # The strict rule may have to take a new row back: a transaction of its own.
    try:
        with transaction.atomic(using=using):
            return _enqueue(delivery, using)
    except _StrictReplay as replay:
        return Stored(Outcome.DUPLICATE, replay.session, replayed=True)


def _enqueue(delivery: Delivery, using: str) -> Stored:
    # Each statement stands alone (no transaction: BEGIN and COMMIT would be
    # two more round trips on the path Shopify times): the insert is atomic,
    # and the re-arm's WHERE is checked by the UPDATE itself, so a worker that
    # took the row in between is not overridden. The session is read right
    # after the statement that committed, before anything else can reconnect.
    seen = _store(delivery, using, status=Status.PENDING)
    if seen.is_new:
        if seen.replayed and delivery.body_strict:
            raise _StrictReplay(_session(using))
        return Stored(Outcome.QUEUED, _session(using), replayed=seen.replayed, pk=seen.pk)
    if seen.status is not None and seen.status != Status.FAILED:
        return Stored(Outcome.DUPLICATE, _session(using), replayed=seen.replayed)
    rearmed = _rearm(delivery, using)
    outcome = Outcome.DUPLICATE if rearmed is None else Outcome.QUEUED
    return Stored(outcome, _session(using), pk=rearmed)


def _rearm(delivery: Delivery, using: str) -> int | None:
    """Make the delivery's failed event pending again; its id, or None if none is failed."""
    connection = connections[using]
    params = {
        "source": delivery.source,
        "key": delivery.key,
        "body_sha256": delivery.body_sha256,
        "body_strict": delivery.body_strict,
        "account": delivery.account,
        "topic": delivery.topic,
        "now": _datetime_field().get_db_prep_save(timezone.now(), connection),
        "lock_timeout": _lock_timeout(),
    }
    try:
        with _bound_cursor(using) as cursor:
            cursor.execute(_rearm_sql(connection.ops.quote_name), params)
            row = cursor.fetchone()
    except OperationalError as exc:
        _raise_if_in_flight(exc, delivery)
        raise
    return None if row is None else int(row[0])


@functools.lru_cache(maxsize=8)
def _rearm_sql(quote: Callable[[str], str]) -> str:
    fields = _fields()

    def column(name: str) -> str:
        return quote(str(fields[name].column))

    # An autocommit statement is its own transaction: it bounds its own wait
    # on a row a worker or a retry holds. The condition is evaluated for a
    # matching row before the UPDATE waits for that row's lock.
    return (
        f"UPDATE {quote(WebhookEvent._meta.db_table)} SET {column('status')} = 'pending', "  # noqa: S608
        f"{column('attempts')} = 0, {column('next_attempt_at')} = %(now)s "
        f"WHERE {_same_event_sql(column)} AND {column('status')} = 'failed' "
        f"AND {_LOCK_TIMEOUT} = '' "
        f"RETURNING {column('id')}"
    )


def record_failure(delivery: Delivery, error: str, using: str) -> None:
    """Record that ``handle`` raised for ``delivery`` (its own transaction, after the rollback).

    The row may not exist (the handler's transaction rolled back its insert) or
    may meanwhile have succeeded through a concurrent duplicate: never
    overwrite a success.
    """
    with transaction.atomic(using=using):
        seen = _store(delivery, using, status=Status.FAILED, attempts=1, last_error=error)
        if not seen.is_new:
            WebhookEvent.objects.using(using).filter(_same_event(delivery)).exclude(
                status=Status.SUCCEEDED
            ).update(status=Status.FAILED, attempts=F("attempts") + 1, last_error=error)
