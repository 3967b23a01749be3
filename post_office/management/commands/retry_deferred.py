"""Put failed mail back in the queue (django-mailer's ``retry_deferred``)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from post_office.maintenance import FailedMailFilter, parse_age, requeue_failed


def _age(value: str) -> Any:
    try:
        return parse_age(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


class Command(BaseCommand):
    help = "Requeue failed emails (retry count reset); ages like 90 (minutes), 30s, 15m, 2h, 3d, 1w."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=_age, help="Only emails that failed at least this long ago.")
        parser.add_argument("--newer-than", type=_age, help="Only emails that failed at most this long ago.")
        parser.add_argument("--template", help="Only emails made from the template with this name.")
        parser.add_argument("--error", help="Only emails whose last error's type or message contains this text.")
        parser.add_argument("--dry-run", action="store_true", help="Only print how many emails would be requeued.")
        parser.add_argument("-b", "--batch-size", type=int, default=1000, help="Rows updated per batch (default 1000).")

    def handle(self, *args: str, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        selection = FailedMailFilter(
            older_than=options["older_than"],
            newer_than=options["newer_than"],
            template=options["template"],
            error=options["error"],
        )
        count = requeue_failed(selection, dry_run=options["dry_run"], batch_size=options["batch_size"])
        verb = "would be requeued" if options["dry_run"] else "requeued"
        self.stdout.write(f"{count} failed emails {verb}.")
