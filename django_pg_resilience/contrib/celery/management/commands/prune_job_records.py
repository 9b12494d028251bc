"""``manage.py prune_job_records --older-than 30d``: delete old job keys in batches."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, router
from django.utils import timezone

from django_pg_resilience.contrib.celery.models import JobRecord
from django_pg_resilience.management.commands.prune_webhook_events import parse_age
from django_pg_resilience.pruning import delete_in_batches


class Command(BaseCommand):
    help = (
        "Delete job records (the idempotency keys of tasks that committed) older than "
        "--older-than, in batches that keep locks short. Keep them longer than a task can be "
        "redelivered or retried: a job whose key is gone runs again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", default="30d", help="Age, e.g. 30d, 12h (default 30d).")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--database", default=None)
        parser.add_argument("--task", default=None, help="Only the records of this task name.")
        parser.add_argument("--dry-run", action="store_true", help="Count, do not delete.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            age = parse_age(options["older_than"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        using = options["database"] or router.db_for_write(JobRecord) or DEFAULT_DB_ALIAS
        queryset = JobRecord.objects.using(using).filter(recorded_at__lt=timezone.now() - age)
        if options["task"]:
            queryset = queryset.filter(task=options["task"])
        if options["dry_run"]:
            self.stdout.write(f"{queryset.count()} job records would be deleted")
            return
        deleted = delete_in_batches(queryset, using, options["batch_size"])
        self.stdout.write(f"{deleted} job records deleted")
