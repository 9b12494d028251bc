"""The package's one model: the webhook deliveries it has seen."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

__all__ = ["WebhookEvent"]


class WebhookEvent(models.Model):
    """One webhook event, stored once per ``(source, key)``.

    The unique ``(source, key)`` constraint is what makes processing
    exactly-once: the row is inserted in the same transaction as the handler's
    own writes, so a concurrent duplicate waits on the index until the first
    delivery commits (then it is a duplicate) or rolls back (then it processes
    the event itself).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    #: Who sent it: "shopify", "standard", "github" or a view's own ``source``.
    source = models.CharField(max_length=64)
    #: The deduplication key (Shopify: X-Shopify-Webhook-Id by default).
    key = models.CharField(max_length=255)
    #: The sender's event id when it differs from ``key`` (Shopify: X-Shopify-Event-Id).
    event_id = models.CharField(max_length=255, blank=True, default="")
    topic = models.CharField(max_length=255, blank=True, default="")
    #: The shop / installation / account the event belongs to.
    account = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    #: When the async worker may try a pending event again (backoff).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    #: When the sender says the event happened (X-Shopify-Triggered-At, webhook-timestamp).
    triggered_at = models.DateTimeField(null=True, blank=True)
    #: The last handler error, truncated, with the view's secrets masked.
    last_error = models.TextField(blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)
    #: The useful headers (never a signature).
    headers = models.JSONField(default=dict, blank=True)
    #: Dotted path of the view class whose ``handle()`` processes the event
    #: (the async worker and the admin's replay action import it).
    handler = models.CharField(max_length=255, blank=True, default="")
    #: Hex SHA-256 of the raw body, when the view deduplicates by body
    #: (``dedup_body``): a signed body replayed under a new, unsigned delivery
    #: id, for the same account and topic, is a duplicate. Empty when the view does not.
    body_sha256 = models.CharField(max_length=64, blank=True, default="")
    #: The same body was already stored for this source under another account
    #: or topic when this delivery arrived: a sender firing several topics with
    #: one body, or a captured body replayed under a new topic.
    body_replayed = models.BooleanField(default=False)
    #: Stored by a view with ``dedup_body_strict``: its body is unique in the
    #: source, whatever the account or topic (the strict cross-topic rule).
    body_strict = models.BooleanField(default=False)
    #: While the async worker holds the event (status ``processing``): when its
    #: lease ends. A worker that died leaves it; another takes it after that.
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        ordering = ["-received_at"]
        permissions = [("replay_webhookevent", _("Can replay webhook events"))]
        constraints = [
            models.UniqueConstraint(fields=["source", "key"], name="pg_resilience_webhook_unique"),
            # Column by column, not a joined key: ("a:b", "c") and ("a", "b:c")
            # are two scopes. body_sha256 comes second so the same index finds
            # a body under any account and topic (the replay flag, the strict rule).
            models.UniqueConstraint(
                fields=["source", "body_sha256", "account", "topic"],
                name="pg_resilience_webhook_body_scope",
                condition=~models.Q(body_sha256=""),
            ),
            models.UniqueConstraint(
                fields=["source", "body_sha256"],
                name="pg_resilience_webhook_body_strict",
                condition=~models.Q(body_sha256="") & models.Q(body_strict=True),
            ),
        ]
        indexes = [
            models.Index(fields=["source", "event_id"], name="pg_resilience_webhook_event"),
            models.Index(
                fields=["next_attempt_at"],
                name="pg_resilience_webhook_due",
                condition=models.Q(status="pending"),
            ),
            models.Index(fields=["received_at"], name="pg_resilience_webhook_recv"),
            models.Index(
                fields=["locked_until"],
                name="pg_resilience_webhook_lease",
                condition=models.Q(status="processing"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.key} ({self.status})"
