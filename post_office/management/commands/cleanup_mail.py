"""Delete old sent and failed mail (never queued or scheduled mail)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from post_office.maintenance import cleanup_expired_mails, cutoff_for_days


class Command(BaseCommand):
    help = "Delete sent and failed emails older than --days days; queued and scheduled mail is kept."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-d", "--days", type=int, default=90, help="Age in days (default 90).")
        parser.add_argument(
            "-da", "--delete-attachments", action="store_true", help="Also delete attachments no email uses any more."
        )
        parser.add_argument("-b", "--batch-size", type=int, default=1000, help="Rows deleted per batch (default 1000).")

    def handle(self, *args: str, **options: Any) -> None:
        if options["days"] < 0:
            raise CommandError("--days must be zero or more")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        emails, attachments = cleanup_expired_mails(
            cutoff_for_days(options["days"]),
            delete_attachments=options["delete_attachments"],
            batch_size=options["batch_size"],
        )
        self.stdout.write(f"Deleted {emails} emails and {attachments} attachments.")
