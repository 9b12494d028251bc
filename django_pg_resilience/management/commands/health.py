"""``manage.py health``: is the database cluster fit to serve, and if not, what to do.

Exit status follows the Nagios plugin convention: 0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN (also for bad configuration), so cron, a monitoring agent or a person
can act on it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from psycopg.conninfo import conninfo_to_dict

from django_pg_resilience.conf import app_settings
from django_pg_resilience.health import FORMATS, Status, Thresholds, render, run_checks
from django_pg_resilience.management.stopping import stopped_by_signals

_CLEAR_SCREEN = "\033[H\033[2J"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _ratio(text: str) -> float:
    """80 and 0.8 both mean 80 %."""
    value = _positive(text.rstrip("%"))
    ratio = value / 100 if value > 1 else value
    if ratio > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is more than 100 %")
    return ratio


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file and a rename: readers never see half a file."""
    path = path.resolve()
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as temp:
            temp.write(text)
            temp.flush()
            os.fsync(temp.fileno())
        os.chmod(temp_name, 0o644)  # the textfile collector runs as another user
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _named_dsns(dsns: list[str]) -> dict[str, str]:
    """``--pgbouncer`` DSNs named by their host:port (the DSN itself may hold a password)."""
    named = {}
    for index, dsn in enumerate(dsns, start=1):
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            raise ImproperlyConfigured(
                f"--pgbouncer number {index} is not a libpq connection string: "
                "use 'host=... port=6432 user=...'"
            ) from None
        named[f"{params.get('host') or 'localhost'}:{params.get('port') or 6432}"] = dsn
    return named


class Command(BaseCommand):
    help = (
        "Check every database alias on the django_pg_resilience backend and "
        "PG_RESILIENCE['NODES']: reachability, role, replication lag, connections. "
        "Exit status 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."
    )
    requires_system_checks: list[str] = []  # must work when the app is half broken
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            metavar="ALIAS",
            help="Check this alias (repeatable). Default: every alias on the backend.",
        )
        parser.add_argument("--format", choices=FORMATS, default="table")
        parser.add_argument(
            "--output",
            metavar="FILE",
            help="Write the report to FILE atomically (temp file + rename) instead of stdout.",
        )
        parser.add_argument(
            "--watch",
            type=_positive,
            metavar="SECONDS",
            help="Check again every SECONDS until Ctrl-C; exit with the last round's status.",
        )
        parser.add_argument(
            "--timeout",
            type=_positive,
            metavar="SECONDS",
            help="Longest wait for each node (default PG_RESILIENCE['HEALTH_TIMEOUT'], 2 s).",
        )
        thresholds = parser.add_argument_group("thresholds")
        thresholds.add_argument("--lag-warning", type=_positive, metavar="SECONDS")
        thresholds.add_argument("--lag-critical", type=_positive, metavar="SECONDS")
        thresholds.add_argument(
            "--connections-warning", type=_ratio, metavar="PERCENT", help="80 or 0.8"
        )
        thresholds.add_argument("--connections-critical", type=_ratio, metavar="PERCENT")
        thresholds.add_argument("--oldest-transaction-warning", type=_positive, metavar="SECONDS")
        thresholds.add_argument(
            "--no-standby-required",
            action="store_true",
            help="A primary without a streaming standby is OK (a single-node database).",
        )
        cloud = parser.add_argument_group("DigitalOcean")
        cloud.add_argument(
            "--digitalocean",
            action="store_true",
            help="Also ask the DigitalOcean API (token from the DIGITALOCEAN_TOKEN variable).",
        )
        cloud.add_argument(
            "--do-cluster",
            metavar="UUID",
            help="The cluster UUID (default PG_RESILIENCE['DIGITALOCEAN_CLUSTER']).",
        )
        parser.add_argument(
            "--pgbouncer",
            action="append",
            dest="pgbouncers",
            metavar="DSN",
            help="Also read this PgBouncer's admin console, e.g. 'host=10.0.0.5 port=6432 "
            "user=stats' (repeatable; adds to PG_RESILIENCE['PGBOUNCERS']).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            thresholds = Thresholds.from_settings(
                app_settings(),
                lag_warning=options["lag_warning"],
                lag_critical=options["lag_critical"],
                connections_warning=options["connections_warning"],
                connections_critical=options["connections_critical"],
                oldest_transaction_warning=options["oldest_transaction_warning"],
                require_standby=False if options["no_standby_required"] else None,
            )
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc), returncode=int(Status.UNKNOWN)) from None
        if options["digitalocean"] is False and options["do_cluster"]:
            options["digitalocean"] = True
        status = Status.UNKNOWN
        # --watch ends on Ctrl-C (or SIGTERM) after the round in progress, a second one at
        # once: either way with the last round's status, and no traceback.
        try:
            with stopped_by_signals(enabled=bool(options["watch"]), ctrl_c_twice=True) as stop:
                while True:
                    status = self._round(thresholds, options)
                    if not options["watch"] or stop.wait(options["watch"]):
                        break
        except KeyboardInterrupt:
            if not options["watch"]:
                raise
        if options["watch"]:
            self.stdout.write("")  # after the ^C the terminal echoed
        if status is not Status.OK:
            sys.exit(int(status))

    def _round(self, thresholds: Thresholds, options: dict[str, Any]) -> Status:
        try:
            report = run_checks(
                options["databases"],
                thresholds=thresholds,
                timeout=options["timeout"],
                digitalocean=options["digitalocean"],
                do_cluster=options["do_cluster"],
                pgbouncers=_named_dsns(options["pgbouncers"] or []),
            )
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc), returncode=int(Status.UNKNOWN)) from None
        fmt = options["format"]
        if options["output"]:
            write_atomically(Path(options["output"]), render(report, fmt))
            return report.status
        tty = self.stdout.isatty()
        color = fmt == "table" and not options["no_color"] and (options["force_color"] or tty)
        text = render(report, fmt, color=color, show_dsn=options["verbosity"] >= 2)
        if options["watch"] and tty and fmt == "table":
            text = _CLEAR_SCREEN + text
        self.stdout.write(text, ending="")
        self.stdout.flush()
        return report.status
