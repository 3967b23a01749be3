"""The migrations match the models and run forward and backward on this database."""

from __future__ import annotations

from io import StringIO

from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import TestCase, TransactionTestCase

APP = "post_office"


def post_office_tables() -> set[str]:
    """Every table the current models need, M2M tables included."""
    tables = set()
    for model in apps.get_app_config(APP).get_models(include_auto_created=True):
        tables.add(model._meta.db_table)
    return tables


def existing_tables() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.table_names(cursor))


class MissingMigrationsTest(TestCase):
    def test_no_missing_migrations(self):
        out = StringIO()
        try:
            call_command("makemigrations", APP, "--check", "--dry-run", stdout=out, stderr=out)
        except SystemExit:
            self.fail(f"The models have changes that are not in a migration:\n{out.getvalue()}")


class MigrateForwardAndBackwardTest(TransactionTestCase):
    """Migrate post_office step by step to the latest, back to zero, and forward again."""

    def setUp(self) -> None:
        # Whatever happens, leave the schema as the rest of the suite expects it.
        self.addCleanup(call_command, "migrate", APP, verbosity=0)

    def migration_names(self) -> list[str]:
        executor = MigrationExecutor(connection)
        graph = executor.loader.graph
        (leaf,) = graph.leaf_nodes(APP)
        return [name for app, name in graph.forwards_plan(leaf) if app == APP]

    def applied(self) -> list[str]:
        executor = MigrationExecutor(connection)
        return sorted(name for app, name in executor.loader.applied_migrations if app == APP)

    def test_forward_to_latest_back_to_zero_and_forward_again(self):
        names = self.migration_names()
        self.assertTrue(names)
        self.assertEqual(self.applied(), sorted(names))
        self.assertTrue(post_office_tables() <= existing_tables())

        call_command("migrate", APP, "zero", verbosity=0)
        self.assertEqual(self.applied(), [])
        self.assertEqual(post_office_tables() & existing_tables(), set())

        # Forward one migration at a time, so every intermediate state is exercised.
        for index, name in enumerate(names):
            call_command("migrate", APP, name, verbosity=0)
            self.assertEqual(self.applied(), sorted(names[: index + 1]))
        self.assertTrue(post_office_tables() <= existing_tables())

        # Backward one at a time, then forward again in one go.
        for index in range(len(names) - 2, -1, -1):
            call_command("migrate", APP, names[index], verbosity=0)
            self.assertEqual(self.applied(), sorted(names[: index + 1]))
        call_command("migrate", APP, "zero", verbosity=0)
        self.assertEqual(post_office_tables() & existing_tables(), set())
        call_command("migrate", APP, verbosity=0)
        self.assertEqual(self.applied(), sorted(names))
        self.assertTrue(post_office_tables() <= existing_tables())

    def test_migrated_schema_stores_and_deletes_a_queued_email(self):
        from post_office import mail
        from post_office.models import Email

        call_command("migrate", APP, "zero", verbosity=0)
        call_command("migrate", APP, verbosity=0)
        email = mail.send(
            ['"Doe, John" <john@example.com>'],
            "from@example.com",
            subject="after migrating",
            message="body",
            headers={"X-Test": "1"},
            attachments={"a.txt": b"content"},
        )
        stored = Email.objects.get(pk=email.pk)
        self.assertEqual(stored.to, ['"Doe, John" <john@example.com>'])
        self.assertEqual(stored.attachments.count(), 1)
        stored.delete()
        self.assertFalse(Email.objects.exists())
