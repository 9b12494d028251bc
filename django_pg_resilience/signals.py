"""Django signals sent by the package. Every signal is sent with ``alias``.

Receivers must be quick and must not touch the database: most of these fire
while the database is unreachable.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = [
    "breaker_closed",
    "breaker_opened",
    "connection_retry",
    "database_unavailable_response",
    "failover_detected",
    "job_parked",
    "maintenance_response",
    "primary_fallback",
    "reconnected",
    "replica_promoted",
    "replica_read",
    "retries_exhausted",
    "webhook_body_replayed",
    "webhook_duplicate",
    "webhook_failed",
    "webhook_received",
    "webhook_signature_failed",
]

#: A connect or statement attempt failed and will be retried.
#: kwargs: alias, attempt, max_attempts, delay (seconds before the next attempt), sqlstate, error.
connection_retry = Signal()

#: A broken connection was replaced by a new one. kwargs: alias, attempts, elapsed (seconds).
reconnected = Signal()

#: The server behind the alias changed (new system identifier, timeline or address).
#: kwargs: alias, previous (dict), current (dict).
failover_detected = Signal()

#: Retrying gave up. kwargs: alias, attempts, elapsed (seconds), error.
retries_exhausted = Signal()

#: The circuit breaker opened: callers now fail fast. kwargs: alias, retry_after (seconds).
breaker_opened = Signal()

#: The circuit breaker closed after a successful probe. kwargs: alias, outage (seconds).
breaker_closed = Signal()

#: The middleware answered 503. kwargs: request, alias, retry_after, error.
database_unavailable_response = Signal()

#: A webhook delivery was verified and stored. kwargs: source, key, topic.
webhook_received = Signal()

#: A webhook delivery was recognised as a duplicate. kwargs: source, key, topic.
webhook_duplicate = Signal()

#: A webhook's handler raised or ran out of attempts. kwargs: source, key, topic, error.
webhook_failed = Signal()

#: A webhook body already stored for the source under another account or topic
#: arrived: a sender firing several topics with one body, or a captured body
#: replayed under a new topic. kwargs: source, key, topic, account, outcome
#: ("processed" or "queued": a new event, flagged ``body_replayed``; "duplicate"
#: under the view's ``dedup_body_strict``).
webhook_body_replayed = Signal()

#: The replica router sent a read to a replica. kwargs: alias (the replica).
replica_read = Signal()

#: The replica router sent a read to the primary although replicas are configured.
#: kwargs: alias (the primary), reason ("lag", "down", "read_your_writes", "promoted",
#: "unmeasured", "transaction" or "pinned").
primary_fallback = Signal()

#: A replica alias answered as a primary (it was promoted); it gets no reads while
#: it is one. kwargs: alias.
replica_promoted = Signal()
#: A webhook delivery was refused with 401. kwargs: source, reason (the refusal
#: code: ``bad_signature``, ``missing_signature``, ``stale_timestamp``,
#: ``no_secret``...). Never the signature or the body. A spike means a rotated
#: secret missing from the view, or someone probing the endpoint.
webhook_signature_failed = Signal()

#: The middleware answered 503 because of planned maintenance (``manage.py
#: maintenance on``). kwargs: request, retry_after (seconds), kind ("html",
#: "json" or "webhook"). No alias: maintenance is not about one database.
maintenance_response = Signal()

#: A background job's outage budget ran out: it was parked (``ParkedJob``) and
#: failed with ``OutageBudgetExceeded``. No alias. kwargs: task (its name),
#: task_id, key (the job key, "" if none), first_failure (a datetime), error
#: (the last error, secrets masked). Sent once the parked row is written.
job_parked = Signal()
