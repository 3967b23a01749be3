"""Keep database templates in files: ``mail_templates export DIR [--name N ...]`` and ``mail_templates import DIR [--dry-run]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from post_office.rendering.sync import TemplateFilesError, export_templates, import_templates


class Command(BaseCommand):
    help = (
        "Export database email templates (with their translations) to block-format files, "
        "or import such files back (checked first, written all at once)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        export = actions.add_parser("export", help="Write one file per template and language.")
        export.add_argument("directory")
        export.add_argument("--name", action="append", dest="names", help="Only this template (repeatable).")
        imported = actions.add_parser("import", help="Create or update templates from the files.")
        imported.add_argument("directory")
        imported.add_argument("--dry-run", action="store_true", help="Show the differences; write nothing.")

    def handle(self, *args: str, **options: Any) -> None:
        try:
            if options["action"] == "export":
                self.export(options["directory"], options["names"])
            else:
                self.import_(options["directory"], options["dry_run"], options["verbosity"])
        except TemplateFilesError as error:
            problems = "\n".join(f"  {problem}" for problem in error.errors)
            raise CommandError(f"Nothing was written; {len(error.errors)} problem(s):\n{problems}") from None

    def export(self, directory: str, names: list[str] | None) -> None:
        result = export_templates(directory, names)
        for path in result.written:
            self.stdout.write(f"Wrote {path}")
        total = len(result.written) + len(result.unchanged)
        self.stdout.write(
            f"Exported {total} template(s) to {directory}: {len(result.written)} written, "
            f"{len(result.unchanged)} unchanged."
        )

    def import_(self, directory: str, dry_run: bool, verbosity: int) -> None:
        plan = import_templates(directory, dry_run=dry_run)
        verb = {"create": "Would create" if dry_run else "Created", "update": "Would update" if dry_run else "Updated"}
        for change in plan.changes:
            if change.action == "unchanged":
                if verbosity > 1:
                    self.stdout.write(f"Unchanged {change.file.label} ({change.file.path})")
                continue
            fields = f" ({', '.join(change.diffs)})" if change.diffs else ""
            self.stdout.write(f"{verb[change.action]} {change.file.label} from {change.file.path}{fields}")
            if dry_run or verbosity > 1:
                for diff in change.diffs.values():
                    self.stdout.write(diff, ending="")
        created, updated = len(plan.by_action("create")), len(plan.by_action("update"))
        unchanged = len(plan.by_action("unchanged"))
        if not plan.has_changes:
            self.stdout.write(f"No changes: {unchanged} template(s) are up to date.")
        elif dry_run:
            self.stdout.write(
                f"Dry run: {created} to create, {updated} to update, {unchanged} unchanged; nothing was written."
            )
        else:
            self.stdout.write(f"Imported: {created} created, {updated} updated, {unchanged} unchanged.")
