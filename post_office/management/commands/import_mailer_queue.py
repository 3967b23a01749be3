"""Import django-mailer's queue, message logs and don't-send list (run it once when switching)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from post_office.models import ImportedRow
from post_office.switch.mailer import MailerImport
from post_office.switch.mailer_tables import TABLES


class Command(BaseCommand):
    help = (
        "Import what django-mailer left in the database: its don't-send list, its queued and deferred messages "
        "and its message logs. Rows imported before are skipped; unreadable rows are reported, not imported."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Read and check everything; write nothing.")
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per batch and transaction (default 500).")
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="The database alias holding django-mailer's tables."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        database = options["database"]
        if database not in connections:
            raise CommandError(f"--database {database!r} is not in settings.DATABASES")
        with connections[ImportedRow.objects.db].cursor() as cursor:
            if ImportedRow._meta.db_table not in connections[ImportedRow.objects.db].introspection.table_names(cursor):
                raise CommandError("post_office's tables are not there yet: run 'manage.py migrate' first")
        try:
            run = MailerImport(
                database=database,
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
                progress=self.stdout.write if options["verbosity"] >= 2 else None,
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
        if not run.tables.present:
            raise CommandError(
                f"database {database!r} has none of django-mailer's tables ({', '.join(TABLES)}); "
                "use --database to name the one that has them"
            )
        summary = run.run()
        for line in summary.lines():
            self.stdout.write(line)
