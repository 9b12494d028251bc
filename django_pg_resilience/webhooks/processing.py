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

A second unique index, on ``(source, body_sha256)`` where the digest is set,
makes a signed body replayed under a fresh (unsigned) delivery id a duplicate
of the first. ``ON CONFLICT DO NOTHING`` names no index, so either conflict
leaves the insert to the duplicate path.

Waiting on an in-flight delivery is bounded by ``lock_timeout``
(``WEBHOOK_LOCK_TIMEOUT``), set for the transaction by the insert itself (no
extra round trip); when it expires :class:`DeliveryInFlight` is raised and the
view answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import datetime
import enum
import functools
import json
import logging
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DataError, OperationalError, connections, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from django_pg_resilience import conf
from django_pg_resilience.errors import sqlstate_of
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.webhooks.exceptions import DeliveryInFlight, bad_request

if TYPE_CHECKING:
    from django_pg_resilience.webhooks.views import IdempotentWebhookView

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


def load_view(path: str) -> IdempotentWebhookView:
    """An instance of the webhook view class at ``path`` (``WebhookEvent.handler``)."""
    from django_pg_resilience.webhooks.views import IdempotentWebhookView

    view_class = import_string(path)
    if not (isinstance(view_class, type) and issubclass(view_class, IdempotentWebhookView)):
        raise ImproperlyConfigured(f"{path} is not an IdempotentWebhookView subclass.")
    return view_class()


def load_handler(path: str) -> Callable[[WebhookEvent], None]:
    """The ``handle`` of the view class at ``path`` (for the worker and the admin's replay)."""
    return load_view(path).handle


def view_secrets(view: IdempotentWebhookView) -> list[str]:
    """The view's secrets, to mask them in errors; none if it cannot say."""
    try:
        return [secret for secret in view.get_secrets() if isinstance(secret, str)]
    except Exception:
        return []


def describe_error(
    exc: BaseException, secrets: Sequence[str] = (), *, with_traceback: bool = False
) -> str:
    """``Type: message``, truncated, with every secret masked (for ``last_error`` and logs)."""
    if with_traceback:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    else:
        text = f"{type(exc).__name__}: {exc}"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    if not with_traceback and len(text) > ERROR_LIMIT:
        text = text[: ERROR_LIMIT - 1] + "…"
    return text


def _insert_if_new(
    delivery: Delivery,
    using: str,
    *,
    status: str,
    attempts: int = 0,
    last_error: str = "",
) -> int | None:
    """Insert the event row unless ``(source, key)`` exists; its id, or None.

    ``ON CONFLICT DO NOTHING`` waits for an in-flight insert of the same key
    to commit or roll back, which is what orders concurrent duplicates.
    """
    connection = connections[using]
    # The ORM's per-field preparation is skipped on this hot path: the text and
    # integer columns take their values as they are, the JSON columns take JSON
    # text (cast to jsonb in the SQL); only the timestamps go through their
    # field, which handles naive values and USE_TZ as the ORM would.
    prepare_datetime = _datetime_field().get_db_prep_save
    received_at = prepare_datetime(timezone.now(), connection)
    params = (
        delivery.source,
        delivery.key,
        delivery.event_id,
        delivery.topic,
        delivery.account,
        status,
        attempts,
        received_at,
        received_at if status == Status.SUCCEEDED else None,
        received_at if status == Status.PENDING else None,
        prepare_datetime(delivery.triggered_at, connection),
        last_error,
        json.dumps(delivery.payload),
        json.dumps(dict(delivery.headers)),
        delivery.handler,
        delivery.body_sha256,
        _lock_timeout(),
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(_insert_sql(connection.ops.quote_name), params)
            row = cursor.fetchone()
    except DataError:
        # Valid JSON PostgreSQL cannot store (a NUL character, a huge number):
        # no retry would ever succeed, so it is refused like malformed JSON.
        # Raising leaves the caller's atomic block (if any), which rolls back.
        raise bad_request("unstorable_payload") from None
    except OperationalError as exc:
        _raise_if_in_flight(exc, delivery)
        raise
    return None if row is None else int(row[0])


def _lock_timeout() -> str:
    """``lock_timeout`` for PostgreSQL, in milliseconds (``"0"`` waits without bound)."""
    return str(max(0, round(conf.app_settings().WEBHOOK_LOCK_TIMEOUT * 1000)))


def _raise_if_in_flight(exc: BaseException, delivery: Delivery) -> None:
    if sqlstate_of(exc) == _LOCK_NOT_AVAILABLE:
        raise DeliveryInFlight(delivery.source, delivery.key) from None


#: The columns :func:`_insert_if_new` fills, in the order of its parameters.
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
)
_JSON_COLUMNS = frozenset({"payload", "headers"})


def _fields() -> dict[str, Any]:
    return {f.name: f for f in WebhookEvent._meta.concrete_fields}


@functools.cache
def _datetime_field() -> Any:
    return WebhookEvent._meta.get_field("received_at")


@functools.lru_cache(maxsize=8)
def _insert_sql(quote: Callable[[str], str]) -> str:
    fields = _fields()
    columns = ", ".join(quote(str(fields[name].column)) for name in _INSERT_COLUMNS)
    placeholders = ["%s::jsonb" if name in _JSON_COLUMNS else "%s" for name in _INSERT_COLUMNS]
    # The last value also sets lock_timeout for the transaction: the VALUES row
    # is computed before the insert may wait on an in-flight duplicate, so the
    # bound applies to that wait, at no extra round trip. left(..., 0) is "".
    placeholders[-1] += " || left(set_config('lock_timeout', %s, true), 0)"
    # No conflict target: the key's and the body digest's unique indexes both
    # make the delivery a duplicate.
    return (
        f"INSERT INTO {quote(WebhookEvent._meta.db_table)} ({columns}) "  # noqa: S608
        f"VALUES ({', '.join(placeholders)}) ON CONFLICT DO NOTHING "
        f"RETURNING {quote(str(fields['id'].column))}"
    )


def _event_from(pk: int, delivery: Delivery, using: str) -> WebhookEvent:
    """The row just inserted by :func:`process_inline`, without reading it back."""
    # Positional values in field order take Model.__init__'s fast path (no
    # keyword matching), and from_db marks the instance as saved in ``using``.
    values = _event_values(pk, delivery)
    return WebhookEvent.from_db(using, _concrete_names(), values)


@functools.cache
def _concrete_names() -> tuple[str, ...]:
    return tuple(f.attname for f in WebhookEvent._meta.concrete_fields)


def _event_values(pk: int, delivery: Delivery) -> list[Any]:
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
    # Inside the block the session cannot change (a lost connection fails the
    # transaction), so the one read there is the one COMMIT runs on.
    with transaction.atomic(using=using):
        # A new event is inserted already marked succeeded: nobody sees the
        # row before COMMIT, and if handle() raises it rolls back with the
        # handler's writes. One statement fewer than insert-then-update.
        pk = _insert_if_new(delivery, using, status=Status.SUCCEEDED, attempts=1)
        if pk is not None:
            handle(_event_from(pk, delivery, using))
            return Stored(Outcome.PROCESSED, _session(using))
        event = _locked_existing(delivery, using)
        if event is None or event.status == Status.SUCCEEDED:
            return Stored(Outcome.DUPLICATE, _session(using))
        # A failed or still-pending event: this delivery processes it now,
        # under the row lock (the async worker skips locked rows).
        run_handler(event, handle, using)
        session = _session(using)
    return Stored(Outcome.PROCESSED, session)


def _same_event(delivery: Delivery) -> Q:
    """The stored row(s) ``delivery`` duplicates: same key, or same body digest."""
    same = Q(key=delivery.key)
    if delivery.body_sha256:
        same |= Q(body_sha256=delivery.body_sha256)
    return Q(source=delivery.source) & same


def _locked_existing(delivery: Delivery, using: str) -> WebhookEvent | None:
    """The row the insert conflicted with, locked; the key's row first. None if pruned since."""
    try:
        rows = list(
            WebhookEvent.objects.using(using).select_for_update().filter(_same_event(delivery))[:2]
        )
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
    # Each statement stands alone (no transaction: BEGIN and COMMIT would be
    # two more round trips on the path Shopify times): the insert is atomic,
    # and the re-arm's WHERE is checked by the UPDATE itself, so a worker that
    # took the row in between is not overridden. The session is read right
    # after the statement that committed, before anything else can reconnect.
    if _insert_if_new(delivery, using, status=Status.PENDING) is not None:
        return Stored(Outcome.QUEUED, _session(using))
    rearmed = (
        WebhookEvent.objects.using(using)
        .filter(_same_event(delivery), status=Status.FAILED)
        .update(status=Status.PENDING, attempts=0, next_attempt_at=timezone.now())
    )
    return Stored(Outcome.QUEUED if rearmed else Outcome.DUPLICATE, _session(using))


def record_failure(delivery: Delivery, error: str, using: str) -> None:
    """Record that ``handle`` raised for ``delivery`` (its own transaction, after the rollback).

    The row may not exist (the handler's transaction rolled back its insert) or
    may meanwhile have succeeded through a concurrent duplicate: never
    overwrite a success.
    """
    with transaction.atomic(using=using):
        pk = _insert_if_new(delivery, using, status=Status.FAILED, attempts=1, last_error=error)
        if pk is None:
            WebhookEvent.objects.using(using).filter(_same_event(delivery)).exclude(
                status=Status.SUCCEEDED
            ).update(status=Status.FAILED, attempts=F("attempts") + 1, last_error=error)
