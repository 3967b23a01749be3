"""Deliver mail continuously until stopped (django-mailer's ``runmailer``)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from post_office.delivery.runner import run_runners

RUNNER_OPTIONS = ("processes", "sleep", "max_seconds", "max_passes", "batch_size", "log_level")


class Command(BaseCommand):
    help = "Deliver queued mail in a loop; SIGTERM stops gracefully, a second signal at once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-p", "--processes", type=int, default=1, help="Runner processes to fork (default 1).")
        parser.add_argument("--sleep", type=float, help="Seconds to wait when the queue is empty (EMPTY_QUEUE_SLEEP).")
        parser.add_argument("--max-seconds", type=float, help="Stop gracefully after this many seconds.")
        parser.add_argument("--max-passes", type=int, help="Stop after this many delivery passes.")
        parser.add_argument("--batch-size", type=int, help="Emails claimed at once (default BATCH_SIZE).")
        parser.add_argument("-l", "--log-level", type=int, choices=(0, 1, 2), help="Override POST_OFFICE['LOG_LEVEL'].")

    def handle(self, *args: str, **options: Any) -> None:
        for name in ("processes", "max_passes", "batch_size"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        if any(options[name] is not None and options[name] < 0 for name in ("sleep", "max_seconds")):
            raise CommandError("--sleep and --max-seconds must be zero or more")
        logger = logging.getLogger("post_office")
        logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(options["verbosity"], logging.DEBUG))
        if not logger.hasHandlers():  # logging is not configured for post_office: show it on stderr
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(message)s"))
            logger.addHandler(handler)
        try:
            stats = run_runners(**{name: options[name] for name in RUNNER_OPTIONS})
        except RuntimeError as error:
            raise CommandError(str(error)) from error
        if options["verbosity"] >= 1:
            self.stdout.write(stats.summary())
