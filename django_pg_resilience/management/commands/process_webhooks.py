"""``manage.py process_webhooks``: the worker for ``process_async = True`` webhook views."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS, close_old_connections, router

from django_pg_resilience import conf
from django_pg_resilience.errors import is_availability_error
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.webhooks.worker import process_due


class Command(BaseCommand):
    help = (
        "Run handle() for pending webhook events (SELECT ... FOR UPDATE SKIP LOCKED: run as "
        "many workers as you like). --once processes what is due and exits; otherwise it loops."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Process what is due, then exit.")
        parser.add_argument(
            "--database", default=None, help="DATABASES alias (default: the router's choice)."
        )
        parser.add_argument(
            "--interval", type=float, default=1.0, help="Seconds between polls (loop mode)."
        )
        parser.add_argument("--limit", type=int, default=None, help="Most events per pass.")
        parser.add_argument(
            "--max-attempts",
            type=int,
            default=None,
            help="Attempts before an event is failed (default WEBHOOK_MAX_ATTEMPTS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"] or router.db_for_write(WebhookEvent) or DEFAULT_DB_ALIAS
        settings = conf.app_settings()
        max_attempts = options["max_attempts"] or settings.WEBHOOK_MAX_ATTEMPTS
        stop = threading.Event()
        if not options["once"] and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
        while True:
            try:
                result = process_due(
                    using,
                    max_attempts=max_attempts,
                    backoff=settings.WEBHOOK_RETRY_BACKOFF,
                    limit=options["limit"],
                )
            except Exception as exc:
                if options["once"] or not is_availability_error(exc):
                    raise
                # The database is away (a failover): drop the dead connection and poll again.
                self.stderr.write(f"database unavailable ({type(exc).__name__}); retrying")
                close_old_connections()
            else:
                if result.total or options["verbosity"] >= 2:
                    self.stdout.write(
                        f"{result.succeeded} succeeded, {result.retried} to retry, "
                        f"{result.failed} failed"
                    )
            if options["once"] or stop.wait(options["interval"]):
                return
