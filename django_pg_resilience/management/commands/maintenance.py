"""``manage.py maintenance on|off|status``: the planned-maintenance switch.

Every process serving the site sees the switch within
``PG_RESILIENCE["MAINTENANCE_CHECK_INTERVAL"]`` (half a second by default);
none of this touches the database, so it works during the switchover it announces.
"""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_pg_resilience import maintenance


def _seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1 second")
    return value


def _describe(state: maintenance.MaintenanceState | None) -> dict[str, Any]:
    if state is None:
        return {"maintenance": "off"}
    since = (
        datetime.datetime.fromtimestamp(state.since, tz=datetime.timezone.utc).isoformat()
        if state.since
        else None
    )
    return {
        "maintenance": "on",
        "retry_after": state.retry_after,
        "message": state.message,
        "since": since,
    }


class Command(BaseCommand):
    help = (
        "Turn planned maintenance on or off for every process of the site, or show it. "
        "While on, the middleware answers the 503 page (JSON for APIs and webhooks), "
        "except for staff (read-only), PG_RESILIENCE['MAINTENANCE_BYPASS_IPS'] and "
        "['MAINTENANCE_BYPASS_PATHS']."
    )
    # The switch exists for when the database is being worked on.
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=("on", "off", "status"))
        parser.add_argument(
            "--retry-after",
            type=_seconds,
            default=None,
            help="Retry-After of the 503, in seconds "
            "(default: PG_RESILIENCE['MAINTENANCE_RETRY_AFTER'], 30).",
        )
        parser.add_argument(
            "--message",
            default="",
            help="A sentence shown on the page and in the JSON (e.g. when you will be back).",
        )
        parser.add_argument("--json", action="store_true", help="Print the state as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            where = maintenance.switch().describe()
        except ImproperlyConfigured as exc:
            raise CommandError(
                f"{exc} Set PG_RESILIENCE['MAINTENANCE_FILE'] (or MAINTENANCE_CACHE)."
            ) from None
        try:
            if action == "on":
                state: maintenance.MaintenanceState | None = maintenance.turn_on(
                    options["retry_after"], options["message"]
                )
            elif action == "off":
                was_on = maintenance.turn_off()
                state = None
                if not was_on and not options["json"]:
                    self.stdout.write(f"Maintenance was not on ({where}).")
            else:
                state = maintenance.switch().read()
        except maintenance.SwitchUnreadable as exc:
            present = " It is there: the site's processes count maintenance as on." * exc.present
            raise CommandError(f"Cannot read the maintenance switch ({exc}).{present}") from None
        except OSError as exc:
            raise CommandError(
                f"Cannot change the maintenance switch ({where}): {exc.strerror or exc}. "
                "Set PG_RESILIENCE['MAINTENANCE_FILE'] to a path in a directory every "
                "process of the site can read and this user can write."
            ) from None
        except Exception as exc:
            # The class only: a cache client's message can carry its URL and password.
            raise CommandError(
                f"Cannot change the maintenance switch ({where}): {type(exc).__name__}. "
                "Is the cache named by PG_RESILIENCE['MAINTENANCE_CACHE'] up and reachable?"
            ) from None
        described = _describe(state)
        if options["json"]:
            self.stdout.write(json.dumps({**described, "switch": where}))
        elif state is None:
            self.stdout.write(f"Maintenance is off ({where}).")
        else:
            self.stdout.write(
                f"Maintenance is on ({where}) since {described['since'] or 'an unknown time'}: "
                f"503 with Retry-After {state.retry_after}s."
                + (f" Message: {state.message}" if state.message else "")
            )
