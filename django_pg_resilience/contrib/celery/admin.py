"""Django admin for parked jobs: see what an outage left behind, and replay it."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from django_pg_resilience.contrib.celery.models import ParkedJob
from django_pg_resilience.contrib.celery.parking import replay
from django_pg_resilience.records_admin import ReplayOnlyAdmin


@admin.register(ParkedJob)
class ParkedJobAdmin(ReplayOnlyAdmin):
    list_display = ["task", "task_id", "first_failure", "parked_at", "replayed_at"]
    list_filter = ["task", ("replayed_at", admin.EmptyFieldListFilter)]
    search_fields = ["=task_id", "=key", "task"]
    date_hierarchy = "parked_at"
    # A parked job is a record of what an outage stopped: read-only; the
    # replay action is the one way to act on it.
    readonly_fields = [field.name for field in ParkedJob._meta.concrete_fields]
    actions = ["replay_selected"]
    replay_permission = "replay_parkedjob"

    @admin.action(description=_("Replay selected parked jobs now"), permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[ParkedJob]) -> None:
        """Send each selected job again, once; its job key keeps the effect exactly-once."""
        result = replay(queryset.values_list("pk", flat=True), using=queryset.db)
        for pk, error in result.errors.items():
            self.message_user(request, f"parked job {pk}: {error}", messages.ERROR)
        if result.sent:
            self.message_user(request, f"{len(result.sent)} jobs replayed.", messages.SUCCESS)
        if result.skipped and not result.sent and not result.errors:
            self.message_user(request, "The selected jobs were already replayed.", messages.WARNING)
