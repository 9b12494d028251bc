"""``manage.py process_webhooks``: the worker for ``process_async = True`` webhook views."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS, close_old_connections, router

from django_pg_resilience import conf
from django_pg_resilience.errors import is_availability_error
from django_pg_resilience.management.stopping import StopRequest, stopped_by_signals
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.webhooks.worker import (
    OUTAGE_WAIT,
    AttemptInterrupted,
    give_back,
    outage_wait,
    process_due,
)


class Command(BaseCommand):
    help = (
        "Run handle() for pending webhook events (SELECT ... FOR UPDATE SKIP LOCKED: run as "
        "many workers as you like). --once processes what is due and exits; otherwise it loops, "
        "and waits out a database outage (one try every 1-1.5 s; an outage is not an attempt)."
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
        with stopped_by_signals(enabled=not options["once"]) as stop:
            self._loop(stop, options)

    def _loop(self, stop: StopRequest, options: dict[str, Any]) -> None:
        using = options["database"] or router.db_for_write(WebhookEvent) or DEFAULT_DB_ALIAS
        settings = conf.app_settings()
        max_attempts = options["max_attempts"] or settings.WEBHOOK_MAX_ATTEMPTS
        #: Attempts an outage interrupted while the database was away: pk -> attempt.
        interrupted: dict[int, int] = {}
        outage_began: float | None = None
        while True:
            try:
                self._give_back(using, interrupted)
                result = process_due(
                    using,
                    max_attempts=max_attempts,
                    backoff=settings.WEBHOOK_RETRY_BACKOFF,
                    limit=options["limit"],
                )
            except Exception as exc:
                if options["once"] or not is_availability_error(exc):
                    raise
                if isinstance(exc, AttemptInterrupted):
                    interrupted[exc.pk] = exc.attempts
                if outage_began is None:
                    outage_began = time.monotonic()
                    self.stderr.write(
                        f"database unavailable ({type(exc).__name__}); trying again every "
                        f"{OUTAGE_WAIT[0]:g}-{OUTAGE_WAIT[1]:g} s"
                    )
                # A failover: drop the dead connection, and try again after a
                # jittered wait (at most one try a second, whatever --interval says).
                close_old_connections()
                if stop.wait(outage_wait()):
                    return
                continue
            if outage_began is not None:
                self.stderr.write(
                    f"database back after {time.monotonic() - outage_began:.1f} s; resuming"
                )
                outage_began = None
            if result.total or options["verbosity"] >= 2:
                self.stdout.write(
                    f"{result.succeeded} succeeded, {result.retried} to retry, "
                    f"{result.failed} failed"
                )
            if options["once"] or stop.wait(options["interval"]):
                return

    @staticmethod
    def _give_back(using: str, interrupted: dict[int, int]) -> None:
        """Hand back the attempts an outage interrupted, first thing once the database answers."""
        for pk, attempts in list(interrupted.items()):
            give_back(using, pk, attempts)
            del interrupted[pk]
