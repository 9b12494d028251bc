"""``manage.py prune_webhook_events --older-than 30d``: delete old finished events in batches."""

from __future__ import annotations

import datetime
import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, router
from django.utils import timezone

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.pruning import delete_in_batches

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> datetime.timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"2w"``, ``"45s"`` (a bare number is days)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not an age like 30d, 12h, 90m, 2w or 45s")
    number, unit = match.groups()
    return datetime.timedelta(seconds=int(number) * _UNITS[unit or "d"])


class Command(BaseCommand):
    help = (
        "Delete webhook events received before --older-than (succeeded and failed ones; "
        "pending events only with --include-pending), in batches that keep locks short. "
        "A deleted event's key can be processed again if the sender redelivers it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", default="30d", help="Age, e.g. 30d, 12h (default 30d).")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--database", default=None)
        parser.add_argument("--include-pending", action="store_true")
        parser.add_argument("--dry-run", action="store_true", help="Count, do not delete.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            age = parse_age(options["older_than"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        using = options["database"] or router.db_for_write(WebhookEvent) or DEFAULT_DB_ALIAS
        queryset = WebhookEvent.objects.using(using).filter(received_at__lt=timezone.now() - age)
        statuses = [WebhookEvent.Status.SUCCEEDED, WebhookEvent.Status.FAILED]
        if options["include_pending"]:
            statuses += [WebhookEvent.Status.PENDING, WebhookEvent.Status.PROCESSING]
        queryset = queryset.filter(status__in=statuses)
        if options["dry_run"]:
            self.stdout.write(f"{queryset.count()} webhook events would be deleted")
            return
        deleted = delete_in_batches(queryset, using, options["batch_size"])
        self.stdout.write(f"{deleted} webhook events deleted")
