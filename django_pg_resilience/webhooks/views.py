"""``IdempotentWebhookView``: verify, deduplicate, process exactly once, acknowledge durably.

Subclass a source's view (:class:`~django_pg_resilience.webhooks.ShopifyWebhookView`,
``StandardWebhookView``, ``GitHubWebhookView``) or this base, give it
``secrets`` and a ``handle(event)``, and route to ``as_view()``.

The order of work in :meth:`IdempotentWebhookView.post` is the contract: the
size limit and the signature are checked on the raw body before anything is
parsed or any database is touched, so a forged or oversized delivery costs no
query and leaves no row.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.db import connections, router
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.http.request import RawPostDataException, UnreadablePostError
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from django_pg_resilience import conf, signals, stats
from django_pg_resilience.backend import compat
from django_pg_resilience.errors import is_availability_error
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.unavailable import (
    BARE_503_ATTRIBUTE,
    is_pool_timeout,
    unavailable_response,
)
from django_pg_resilience.webhooks import dispatch, durability, processing
from django_pg_resilience.webhooks.exceptions import (
    NO_SECRET_CODE,
    DeliveryInFlight,
    WebhookRejected,
    bad_request,
)
from django_pg_resilience.webhooks.processing import Delivery, Outcome, Stored
from django_pg_resilience.webhooks.registry import handler_path, load_handler, register
from django_pg_resilience.webhooks.verifiers import Verifier

__all__ = ["IdempotentWebhookView", "handler_path", "load_handler"]

logger = logging.getLogger("django_pg_resilience.webhooks")

# Views already reported as having no usable secret: one ERROR per view and
# process, not one per delivery (a sender retrying would flood the log).
_reported_without_secret: set[type] = set()
# Sources already reported acknowledging without a standby, until one streams again.
_acknowledging_without_standby: set[str] = set()
_report_lock = threading.Lock()


def _first_time(seen: set[Any], item: Any) -> bool:
    with _report_lock:
        if item in seen:
            return False
        seen.add(item)
        return True


class _EveryAlias(frozenset[str]):
    """A ``_non_atomic_requests`` set that holds every alias.

    ATOMIC_REQUESTS would wrap the view in a transaction: the failure record
    would roll back with the handler, and the durable ack would wait for a
    commit that has not happened. Django's ``non_atomic_requests`` takes one
    alias at a time; webhooks opt out for all of them, whatever DATABASES holds.
    """

    def __contains__(self, alias: object) -> bool:
        return True


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are Python's extension of JSON; PostgreSQL refuses them.
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    # 1e999 is JSON, but Python reads it as inf: the payload handed to handle()
    # would differ from the number stored (the body, as sent).
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} does not fit a float")
    return value


def _json_text(body: bytes) -> str:
    """The body as the text stored in the jsonb column; "" when it must be serialised again.

    json.loads reads UTF-16 and UTF-32 and skips a byte-order mark; PostgreSQL
    reads neither, so those bodies are stored from the parsed payload.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return "" if text.startswith("\ufeff") else text


class IdempotentWebhookView(View):
    """A POST-only, CSRF-exempt view that processes each event exactly once.

    Override :meth:`handle`; set ``secrets`` (or override :meth:`get_secrets`).
    Responses: 200 ``{"status": "processed" | "duplicate" | "queued"}``; 401
    bad, missing or malformed signature, or no usable secret; 400 malformed
    JSON or missing header; 413 body too large; 503 + Retry-After when the
    database is unavailable or busy, the same event is still being processed,
    or the durable ack is unconfirmed; 500 only when ``handle`` raises (the
    event is recorded failed and a retry runs ``handle`` again).
    """

    http_method_names = ["post"]

    #: ``WebhookEvent.source``: keys are unique per source.
    source: ClassVar[str] = "webhook"
    #: The signing secrets; several during a rotation. Or override get_secrets().
    secrets: ClassVar[Sequence[str]] = ()
    #: Checks the signature; the source views set it.
    verifier: ClassVar[Verifier | None] = None
    #: Store as pending and answer at once; ``manage.py process_webhooks`` runs handle().
    process_async: ClassVar[bool] = False
    #: With process_async: called with each queued event's pk once its row commits, to hand
    #: it to a task queue (e.g. ``process_webhook_event.delay``), or its dotted path.
    dispatch_to: ClassVar[dispatch.Dispatcher | str | None] = None
    #: Answer 2xx only once a standby has flushed the commit (503 otherwise).
    durable_ack: ClassVar[bool] = False
    #: Seconds the durable ack waits; None: PG_RESILIENCE["WEBHOOK_DURABLE_ACK_TIMEOUT"].
    durable_ack_timeout: ClassVar[float | None] = None
    #: A DATABASES alias of a standby to ask for the flush position, instead of
    #: the primary's pg_stat_replication (which needs pg_read_all_stats).
    durable_ack_standby: ClassVar[str | None] = None
    #: With durable_ack: acknowledge (200) while no standby is streaming at all,
    #: instead of answering 503 until the provider has built a new one. Counted
    #: (webhooks_durable_ack_without_standby) and logged once per outage.
    #: False (strict) by default: see the trade-off in docs/webhooks.md.
    durable_ack_without_standby: ClassVar[bool] = False
    #: Treat a body already stored for this source, account and topic (same
    #: SHA-256) as a duplicate, whatever its delivery id: the id of Shopify and
    #: GitHub is an unsigned header, so a captured signed body could be
    #: replayed under new ids. The same body under another account or topic is
    #: a new event, flagged (``body_replayed``, a signal, a log line, a metric).
    dedup_body: ClassVar[bool] = True
    #: With dedup_body: the strict rule, a body already stored for this source
    #: under *any* account or topic is a duplicate. Closes cross-topic replay,
    #: and drops a real event when a sender fires two topics with one body.
    dedup_body_strict: ClassVar[bool] = False
    #: The DATABASES alias the events go to; None: the router's db_for_write.
    using: ClassVar[str | None] = None
    #: Largest body in bytes; None: PG_RESILIENCE["WEBHOOK_MAX_BODY_SIZE"].
    max_body_size: ClassVar[int | None] = None
    #: Request headers kept in ``WebhookEvent.headers`` (never a signature header).
    stored_headers: ClassVar[Sequence[str]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Found by its handler path by the worker and the admin's replay.
        register(cls)

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., HttpResponseBase]:
        # Exempted here, once, rather than with method_decorator on dispatch,
        # which decorates again at every request (and which a subclass's own
        # dispatch would drop).
        view = csrf_exempt(super().as_view(**initkwargs))
        # Read by the 503 middleware: webhooks get the JSON 503 the view itself sends.
        setattr(view, BARE_503_ATTRIBUTE, True)
        compat.exempt_from_atomic_requests(view, _EveryAlias())
        return view

    # --- override points -----------------------------------------------------

    def get_secrets(self) -> list[str]:
        """The secrets a delivery may be signed with (rotation: old and new)."""
        return list(self.secrets)

    def verify(self, request: HttpRequest) -> None:
        """Raise ``WebhookRejected`` unless the raw body is signed. No database access here."""
        if self.verifier is None:
            raise ImproperlyConfigured(
                f"{type(self).__name__} has no verifier: subclass ShopifyWebhookView, "
                "StandardWebhookView or GitHubWebhookView, or override verify()."
            )
        self.verifier.verify(request.body, request.headers, self.get_secrets())

    def get_idempotency_key(self, request: HttpRequest, payload: Any) -> str:
        """The deduplication key; raise ``WebhookRejected`` (400) when it is missing."""
        raise NotImplementedError(f"{type(self).__name__} must define get_idempotency_key()")

    def get_topic(self, request: HttpRequest, payload: Any) -> str:
        return ""

    def get_account(self, request: HttpRequest, payload: Any) -> str:
        return ""

    def get_event_id(self, request: HttpRequest, payload: Any) -> str:
        return ""

    def get_triggered_at(self, request: HttpRequest, payload: Any) -> datetime.datetime | None:
        return None

    def get_stored_headers(self, request: HttpRequest) -> dict[str, str]:
        headers = request.headers
        stored = {}
        for name in self.stored_headers:
            value = headers.get(name)
            if value is not None:
                stored[name] = value
        return stored

    def handle(self, event: WebhookEvent) -> None:
        """Process the event (``event.payload`` is the parsed JSON). Your code.

        It runs inside the transaction that marks the event succeeded (so
        ``event.status`` already says so): its database writes commit with it
        or not at all. Do anything outside the database (mail, HTTP calls) in
        ``transaction.on_commit``.
        """
        raise NotImplementedError(f"{type(self).__name__} must define handle(event)")

    # --- the request ---------------------------------------------------------

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            delivery = self.read_delivery(request)
            using = self.using or router.db_for_write(WebhookEvent)
            try:
                return self.store(delivery, using)
            except DeliveryInFlight:
                stats.increment("webhooks_in_flight_timeouts", delivery.source)
                logger.warning(
                    "webhook %s %s: another delivery of it is still being processed; answering 503",
                    delivery.source,
                    delivery.key,
                )
                return self.unavailable(None, delivery, "delivery_in_flight")
            except Exception as exc:
                if is_pool_timeout(exc) or is_availability_error(exc):
                    return self.unavailable(exc, delivery, None)
                raise
        except WebhookRejected as rejected:
            self.rejected(rejected)
            return JsonResponse({"error": rejected.code}, status=rejected.status)

    def rejected(self, rejected: WebhookRejected) -> None:
        """Log (and for a 401 count and signal) a refused delivery: its code, never its input."""
        if rejected.code == NO_SECRET_CODE and _first_time(_reported_without_secret, type(self)):
            logger.error(
                "webhook %s: %s has no usable signing secret (empty, whitespace-only, or a "
                "Standard Webhooks secret with no key); every delivery is refused with 401 "
                "until secrets holds a real one. See pg_resilience.E301 / E303.",
                self.source,
                handler_path(type(self)),
            )
        else:
            logger.warning("webhook %s rejected (%s): %s", self.source, rejected.code, rejected)
        if rejected.status == 401:
            stats.increment("webhooks_signature_failures", self.source)
            signals.webhook_signature_failed.send(
                sender=type(self), source=self.source, reason=rejected.code
            )

    def read_body(self, request: HttpRequest, limit: int) -> bytes:
        """The raw body, reading at most ``limit + 1`` bytes (413 above ``limit``).

        ``request.body`` would read the whole stream into memory first, and
        Django bounds that only while DATA_UPLOAD_MAX_MEMORY_SIZE is set; a
        chunked request has no Content-Length to refuse up front.
        """
        if compat.body_already_read(request):
            body: bytes = request.body  # read already (a test client, a middleware)
        else:
            if compat.request_read_started(request):
                raise RawPostDataException
            try:
                body = request.read(limit + 1)
            except OSError as exc:
                raise UnreadablePostError(*exc.args) from exc
            if len(body) <= limit:
                # What request.body would have done: keep it for verify() and handle().
                compat.keep_request_body(request, body)
        if len(body) > limit:
            raise WebhookRejected(413, "body_too_large")
        return body

    def read_delivery(self, request: HttpRequest) -> Delivery:
        """Size, signature, JSON, key: everything before the database. Raises WebhookRejected."""
        limit = self.max_body_size
        if limit is None:
            limit = conf.app_settings().WEBHOOK_MAX_BODY_SIZE
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise bad_request("bad_content_length") from None
        if declared > limit:
            raise WebhookRejected(413, "body_too_large")
        try:
            body = self.read_body(request, limit)
        except RequestDataTooBig:
            raise WebhookRejected(413, "body_too_large") from None
        except RawPostDataException:
            logger.error(
                "webhook %s: the request body was consumed before the view (a middleware read "
                "request.POST or the stream), so the signature cannot be checked. Do not read "
                "request.POST in middleware for webhook paths.",
                self.source,
            )
            raise bad_request("body_unavailable") from None
        except UnreadablePostError:
            raise bad_request("body_unreadable") from None
        self.verify(request)
        try:
            payload = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
        except (ValueError, RecursionError):
            raise bad_request("malformed_json") from None
        key = self.get_idempotency_key(request, payload)
        if not key or len(key) > 255:
            raise bad_request("missing_header", "the idempotency key is missing or too long")
        return Delivery(
            source=self.source,
            key=key,
            payload=payload,
            topic=self.get_topic(request, payload)[:255],
            account=self.get_account(request, payload)[:255],
            event_id=self.get_event_id(request, payload)[:255],
            triggered_at=self.get_triggered_at(request, payload),
            headers=self.get_stored_headers(request),
            handler=handler_path(type(self)),
            body_sha256=hashlib.sha256(body).hexdigest() if self.dedup_body else "",
            body_strict=self.dedup_body and self.dedup_body_strict,
            payload_json=_json_text(body),
        )

    def store(self, delivery: Delivery, using: str) -> HttpResponse:
        """Process or queue the delivery, then (durable_ack) wait for a standby."""
        if self.process_async:
            stored = processing.enqueue(delivery, using)
            if stored.outcome is Outcome.QUEUED:
                dispatch.hand_over(self, delivery, using, pk=stored.pk)
        else:
            try:
                stored = processing.process_inline(delivery, self.handle, using)
            except (WebhookRejected, DeliveryInFlight):
                raise
            except Exception as exc:
                if is_pool_timeout(exc) or is_availability_error(exc):
                    raise
                return self.handler_failed(exc, delivery, using)
        self.announce(stored, delivery)
        if self.durable_ack and not self.confirm_durable(delivery, using, stored.session):
            return self.unavailable(None, delivery, "durable_ack_unconfirmed")
        return JsonResponse({"status": stored.outcome.value})

    def confirm_durable(self, delivery: Delivery, using: str, committed_on: Any) -> bool:
        """True once a standby has flushed the commit made over ``committed_on``.

        ``committed_on`` is the driver connection the event's write committed
        on; the answer counts only if it is still the session asking.
        """
        timeout = self.durable_ack_timeout
        if timeout is None:
            timeout = conf.app_settings().WEBHOOK_DURABLE_ACK_TIMEOUT
        stats.increment("webhooks_durable_ack_waits", delivery.source)
        # The reads below may be re-run by the backend on a new primary after a
        # failover; a standby of that one would confirm a position the commit
        # never reached there. So the answer counts only if the session that
        # committed is still the one asking. (Behind PgBouncer in transaction
        # mode a server switch does not change the session: use
        # durable_ack_standby, or synchronous replication, there.)
        if self.durable_ack_standby is None:
            lsn, confirmed, streaming = durability.current_wal_position_if_flushed(using)
        else:
            lsn, confirmed, streaming = durability.current_wal_position(using), False, True
        if not confirmed and not streaming and self.durable_ack_without_standby:
            return self.acknowledge_without_standby(delivery, using, committed_on)
        if not confirmed:
            confirmed = durability.wait_for_standby_flush(
                using, lsn, timeout=timeout, standby=self.durable_ack_standby
            )
        confirmed = confirmed and connections[using].connection is committed_on
        if confirmed:
            self.standby_is_back(delivery.source)
        else:
            stats.increment("webhooks_durable_ack_timeouts", delivery.source)
            logger.warning(
                "webhook %s %s: no standby flushed %s within %.1f s; answering 503",
                delivery.source,
                delivery.key,
                lsn,
                timeout,
            )
        return confirmed

    def acknowledge_without_standby(
        self, delivery: Delivery, using: str, committed_on: Any
    ) -> bool:
        """The relaxed policy: no standby streams at all, so the commit is acknowledged as is."""
        if connections[using].connection is not committed_on:
            return False  # a failover since the commit: nothing is known of it
        stats.increment("webhooks_durable_ack_without_standby", delivery.source)
        if _first_time(_acknowledging_without_standby, delivery.source):
            logger.error(
                "webhook %s: no standby is streaming from %r; acknowledging deliveries that "
                "only the primary holds (durable_ack_without_standby) until one streams again",
                delivery.source,
                using,
            )
        return True

    def standby_is_back(self, source: str) -> None:
        if source in _acknowledging_without_standby:
            with _report_lock:
                _acknowledging_without_standby.discard(source)
            logger.warning("webhook %s: a standby confirms commits again", source)

    def announce(self, stored: Stored, delivery: Delivery) -> None:
        kwargs = {"source": delivery.source, "key": delivery.key, "topic": delivery.topic}
        if stored.replayed:
            self.body_replayed(stored, delivery)
        if stored.outcome is Outcome.DUPLICATE:
            stats.increment("webhooks_duplicates", delivery.source)
            signals.webhook_duplicate.send(sender=type(self), **kwargs)
        else:
            stats.increment("webhooks_received", delivery.source)
            signals.webhook_received.send(sender=type(self), **kwargs)

    def body_replayed(self, stored: Stored, delivery: Delivery) -> None:
        """A body already stored under another account or topic arrived: make it visible."""
        stats.increment("webhooks_body_replays", delivery.source)
        logger.warning(
            "webhook %s %s (topic %r, account %r): this body was already stored for %s under "
            "another account or topic; %s",
            delivery.source,
            delivery.key,
            delivery.topic,
            delivery.account,
            delivery.source,
            "a duplicate by the strict rule"
            if stored.outcome is Outcome.DUPLICATE
            else "stored as a new event, flagged body_replayed",
        )
        signals.webhook_body_replayed.send(
            sender=type(self),
            source=delivery.source,
            key=delivery.key,
            topic=delivery.topic,
            account=delivery.account,
            outcome=stored.outcome.value,
        )

    def handler_failed(self, exc: Exception, delivery: Delivery, using: str) -> HttpResponse:
        secrets = processing.view_secrets(self)
        error = processing.describe_error(exc, secrets)
        if logger.isEnabledFor(logging.ERROR):
            # The traceback is formatted and masked here: exc_info would log the
            # exception's message as is, secrets included.
            trace = processing.describe_error(exc, secrets, with_traceback=True)
            logger.error("webhook %s %s: handle() raised\n%s", delivery.source, delivery.key, trace)
        stats.increment("webhooks_failed", delivery.source)
        signals.webhook_failed.send(
            sender=type(self),
            source=delivery.source,
            key=delivery.key,
            topic=delivery.topic,
            error=error,
        )
        try:
            processing.record_failure(delivery, error, using)
        except DeliveryInFlight:
            return self.unavailable(None, delivery, "delivery_in_flight")
        except Exception as record_exc:
            if is_pool_timeout(record_exc) or is_availability_error(record_exc):
                return self.unavailable(record_exc, delivery, None)
            raise
        return JsonResponse({"error": "handler_failed"}, status=500)

    def unavailable(
        self, exc: BaseException | None, delivery: Delivery, code: str | None
    ) -> HttpResponse:
        """The package's one 503 (the middleware's webhook answer): JSON, Retry-After, no-store.

        ``code`` None: ``database_unavailable``, or ``database_busy`` for a busy pool.
        """
        if exc is not None:
            logger.warning(
                "webhook %s %s: database %s (%s); answering 503",
                delivery.source,
                delivery.key,
                "pool busy" if is_pool_timeout(exc) else "unavailable",
                type(exc).__name__,
            )
            if is_pool_timeout(exc):
                alias = self.using or router.db_for_write(WebhookEvent) or "default"
                stats.increment("busy_responses", alias)
        return unavailable_response(self.request, exc, bare=True, code=code)
