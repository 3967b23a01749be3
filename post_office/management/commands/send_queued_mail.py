"""Deliver every due email once (the cron-friendly default)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from post_office.delivery.heartbeat import RunHeartbeat
from post_office.delivery.processes import run_processes
from post_office.delivery.stats import RunStats


class Command(BaseCommand):
    help = "Send queued emails that are due: priority order, oldest first, each through its backend."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-p", "--processes", type=int, default=1, help="Worker processes to run (default 1).")
        parser.add_argument("-l", "--log-level", type=int, choices=(0, 1, 2), help="Override POST_OFFICE['LOG_LEVEL'].")
        parser.add_argument("--batch-size", type=int, help="Emails claimed at once (default BATCH_SIZE).")
        parser.add_argument("--max-emails", type=int, help="Stop after attempting this many emails.")
        parser.add_argument("--max-seconds", type=float, help="Claim no more emails after this many seconds.")
        parser.add_argument("--progress", action="store_true", help="Show a progress line while sending.")
        # django-post_office's cron lines pass a lock file; claims in the database make it unnecessary.
        parser.add_argument("-L", "--lockfile", help="Accepted for compatibility and ignored: no lock file is used.")

    def handle(self, *args: str, **options: Any) -> None:
        if options["processes"] < 1:
            raise CommandError("--processes must be at least 1")
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        if options["max_emails"] is not None and options["max_emails"] < 0:
            raise CommandError("--max-emails must be zero or more")
        if options["max_seconds"] is not None and options["max_seconds"] < 0:
            raise CommandError("--max-seconds must be zero or more")
        if options["verbosity"] >= 2:
            logging.getLogger("post_office").setLevel(logging.DEBUG)
        progress = self._progress if options["progress"] else None
        # The row 'send_queued_mail@<host>' the health page and 'mail_delivery health' read.
        with RunHeartbeat("send_queued_mail").running() as heartbeat:
            heartbeat.stats = stats = run_processes(
                processes=options["processes"],
                batch_size=options["batch_size"],
                log_level=options["log_level"],
                max_emails=options["max_emails"],
                max_seconds=options["max_seconds"],
                on_progress=heartbeat.progress(progress),
            )
        if progress:
            self.stdout.write("")
        if options["verbosity"] >= 1:
            self.stdout.write(stats.summary())

    def _progress(self, stats: RunStats) -> None:
        self.stdout.write(f"\r{stats.summary()}", ending="")
        self.stdout.flush()
