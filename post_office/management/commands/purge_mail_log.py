"""Delete old delivery logs (django-mailer's ``purge_mail_log DAYS -r success|failure|all``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from post_office.maintenance import LOG_RESULTS, purge_logs


class Command(BaseCommand):
    help = "Delete Log rows older than DAYS days; by default only those of successful attempts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("days", type=int, help="Age in days; younger logs are kept.")
        parser.add_argument(
            "-r",
            "--result",
            choices=sorted(LOG_RESULTS),
            default="success",
            help="Which logs: success (default), failure or all.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only print how many logs would be deleted.")
        parser.add_argument("-b", "--batch-size", type=int, default=1000, help="Rows deleted per batch (default 1000).")

    def handle(self, *args: str, **options: Any) -> None:
        if options["days"] < 0:
            raise CommandError("DAYS must be zero or more")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        count = purge_logs(
            options["days"], options["result"], dry_run=options["dry_run"], batch_size=options["batch_size"]
        )
        verb = "would be deleted" if options["dry_run"] else "deleted"
        self.stdout.write(f"{count} {options['result']} log rows {verb}.")
