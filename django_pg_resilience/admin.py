"""Django admin for webhook events: find them, read them, replay the failed ones."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.records_admin import ReplayOnlyAdmin
from django_pg_resilience.webhooks.processing import (
    describe_error,
    load_view,
    run_handler,
    view_secrets,
)


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReplayOnlyAdmin):
    list_display = ["source", "key", "topic", "account", "status", "attempts", "received_at"]
    list_filter = ["status", "source", "topic", "body_replayed"]
    search_fields = ["=key", "=event_id", "account"]
    date_hierarchy = "received_at"
    ordering = ["-received_at"]
    # Events are evidence of what a sender delivered: every field is read-only
    # (replaying goes through the action, not through editing).
    readonly_fields = [
        field.name for field in WebhookEvent._meta.concrete_fields if not field.primary_key
    ]
    actions = ["replay_failed"]
    replay_permission = "replay_webhookevent"

    @admin.action(description=_("Replay selected failed events now"), permissions=["replay"])
    def replay_failed(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        """Run each failed event's handler again, exactly once (locked, like a delivery)."""
        replayed = failed = 0
        for pk in queryset.filter(status=WebhookEvent.Status.FAILED).values_list("pk", flat=True):
            using = queryset.db
            secrets: list[str] = []
            try:
                with transaction.atomic(using=using):
                    event = (
                        WebhookEvent.objects.using(using)
                        .select_for_update()
                        .filter(pk=pk, status=WebhookEvent.Status.FAILED)
                        .first()
                    )
                    if event is None:
                        continue  # replayed meanwhile by a redelivery or the worker
                    view = load_view(event.handler)
                    secrets = view_secrets(view)
                    run_handler(event, view.handle, using)
                replayed += 1
            except Exception as exc:
                failed += 1
                error = describe_error(exc, secrets)
                WebhookEvent.objects.using(queryset.db).filter(pk=pk).update(last_error=error)
                self.message_user(request, f"event {pk}: {error}", messages.ERROR)
        if replayed:
            self.message_user(request, f"{replayed} events replayed.", messages.SUCCESS)
        if not replayed and not failed:
            self.message_user(request, "No failed events selected.", messages.WARNING)
