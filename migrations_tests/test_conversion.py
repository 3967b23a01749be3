"""The conversion of django-post_office's tables (migrations 0015-0022) on this test database.

The rows are written at django-post_office's last schema (our migration 0014, which reproduces it)
through the historical models, the way its code stored them; tests/switch/ does the same against
databases django-post_office 3.12 itself created and filled.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from django.core.files.base import ContentFile
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.test import SimpleTestCase, TestCase, TransactionTestCase

from post_office.checks import check_converted
from post_office.migrations._conversion import ConversionRefused, split_addresses

APP = "post_office"
DPO_LAST = "0014_alter_email_recipient_delivery_status_and_more"
CONVERSION = [
    "0015_convert_preflight",
    "0016_convert_recipients",
    "0017_convert_recipients_swap",
    "0018_convert_emails",
    "0019_convert_ids",
    "0020_convert_templates",
    "0021_convert_attachments_and_logs",
    "0022_convert_queue_tables",
]
WHEN = dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc)


class SplitAddressesTest(SimpleTestCase):
    def test_django_post_office_text_becomes_whole_addresses(self):
        cases = {
            "": [],
            "  ": [],
            "a@example.com": ["a@example.com"],
            "a@example.com, b@example.com": ["a@example.com", "b@example.com"],
            '"Doe, John" <john@example.com>, b@example.com': ['"Doe, John" <john@example.com>', "b@example.com"],
            "Doe, John <john@example.com>": ["Doe, John <john@example.com>"],
            '"A \\" , B" <ab@example.com>,c@example.com': ['"A \\" , B" <ab@example.com>', "c@example.com"],
            "x@example.com (Smith, Jo), y@example.com": ["x@example.com (Smith, Jo)", "y@example.com"],
            "Ünïcødé Näme <u@example.com>": ["Ünïcødé Näme <u@example.com>"],
        }
        for text, expected in cases.items():
            with self.subTest(text=text):
                self.assertEqual(split_addresses(text), expected)


def dpo_models():
    """The historical models at django-post_office's last schema."""
    executor = MigrationExecutor(connection)
    return executor.loader.project_state((APP, DPO_LAST)).apps


def migrate_to(name: str) -> None:
    call_command("migrate", APP, name, verbosity=0)


class ConversionTest(TransactionTestCase):
    """Down to django-post_office's schema, rows in its form, then plain ``migrate``."""

    def setUp(self) -> None:
        self.addCleanup(call_command, "migrate", APP, verbosity=0)
        migrate_to(DPO_LAST)
        self.apps = dpo_models()
        self.rows = self.fill()

    def fill(self) -> dict[str, int]:
        Email = self.apps.get_model(APP, "Email")
        Template = self.apps.get_model(APP, "EmailTemplate")
        Attachment = self.apps.get_model(APP, "Attachment")
        Log = self.apps.get_model(APP, "Log")
        base = Template.objects.create(name="welcome", subject="Hi {{ name }}", content="Hello {{ name }}")
        german = Template.objects.create(
            name="welcome", language="de", default_template=base, subject="Hallo {{ name }}", content="Hallo"
        )
        queued = Email.objects.create(
            from_email="Shop <shop@example.com>",
            to='"Doe, John" <john@example.com>, jane@example.com',
            cc="cc@example.com",
            bcc="",
            subject="queued",
            message="body",
            status=2,
            priority=2,
            headers={"X-Order": "42"},
            context={"name": "John"},
            template=base,
            message_id="<1.2.3@example.com>",
            scheduled_time=WHEN,
            expires_at=WHEN + dt.timedelta(days=3650),
            number_of_retries=None,
            recipient_delivery_status=20,
        )
        stranded = Email.objects.create(
            from_email="shop@example.com", to="x@example.com", subject="now", status=None, priority=None
        )
        requeued = Email.objects.create(
            from_email="shop@example.com",
            to="y@example.com",
            subject="requeued",
            status=3,
            priority=1,
            number_of_retries=2,
            template=german,
        )
        Email.objects.filter(pk__in=[queued.pk, stranded.pk, requeued.pk]).update(created=WHEN, last_updated=WHEN)
        Log.objects.create(email=requeued, status=1, exception_type="SMTPServerDisconnected", message="gone")
        Log.objects.filter(email=requeued).update(date=WHEN)
        Log.objects.create(email=queued, status=20, message="delivered, says the provider")
        attachment = Attachment(name="report.pdf", mimetype="application/pdf", headers={"Content-ID": "<r>"})
        attachment.file.save("report.pdf", ContentFile(b"%PDF report"), save=False)
        attachment.save()
        attachment.emails.add(queued, requeued)
        return {
            "base": base.pk,
            "german": german.pk,
            "queued": queued.pk,
            "stranded": stranded.pk,
            "requeued": requeued.pk,
            "attachment": attachment.pk,
        }

    def check_converted_rows(self) -> None:
        from post_office.models import Attachment, Email, EmailTemplate, Log

        rows = self.rows
        queued = Email.objects.get(pk=rows["queued"])
        self.assertEqual(queued.to, ['"Doe, John" <john@example.com>', "jane@example.com"])
        self.assertEqual((queued.cc, queued.bcc), (["cc@example.com"], []))
        self.assertEqual((queued.status, queued.priority, queued.number_of_retries), (2, 2, 0))
        self.assertEqual((queued.created, queued.last_updated, queued.scheduled_time), (WHEN, WHEN, WHEN))
        self.assertEqual(queued.headers, {"X-Order": "42"})
        self.assertEqual(queued.context, {"name": "John"})
        self.assertEqual(queued.message_id, "<1.2.3@example.com>")
        self.assertEqual(queued.template_id, rows["base"])
        self.assertEqual(queued.recipient_delivery_status, 20)
        stranded = Email.objects.get(pk=rows["stranded"])
        self.assertEqual((stranded.status, stranded.priority), (1, 1))
        self.assertEqual(stranded.logs.get().exception_type, "ConvertedFromDjangoPostOffice")
        requeued = Email.objects.get(pk=rows["requeued"])
        self.assertEqual((requeued.status, requeued.number_of_retries), (3, 2))
        self.assertEqual((requeued.language, requeued.template_language), ("de", "de"))
        self.assertEqual((queued.language, queued.template_language), ("", ""))
        log = requeued.logs.get()
        self.assertEqual((log.date, log.status, log.message, log.worker), (WHEN, 1, "gone", ""))
        self.assertEqual(Log.objects.filter(status=20).count(), 1)
        german = EmailTemplate.objects.get(pk=rows["german"])
        self.assertEqual((german.name, german.language, german.default_template_id), ("welcome", "de", rows["base"]))
        attachment = Attachment.objects.get(pk=rows["attachment"])
        self.assertEqual(attachment.content_hash, hashlib.sha256(b"%PDF report").hexdigest())
        self.assertEqual(sorted(attachment.emails.values_list("pk", flat=True)), [rows["queued"], rows["requeued"]])
        self.assertEqual((attachment.created, attachment.last_used), (WHEN, WHEN))
        with attachment.file.open("rb") as handle:
            self.assertEqual(handle.read(), b"%PDF report")
        # New rows continue after the copied ones, and the converted queue works as ours.
        from post_office import mail

        new = mail.send("new@example.com", "shop@example.com", subject="new", message="x")
        self.assertGreater(new.pk, max(rows["queued"], rows["stranded"], rows["requeued"]))
        due = set(Email.objects.due().values_list("pk", flat=True))
        self.assertEqual(due, {rows["queued"], rows["requeued"], new.pk})

    def test_plain_migrate_converts_every_row(self):
        self.assertFalse(check_converted(databases=None) == [])  # E020 while not converted
        call_command("migrate", APP, verbosity=0)
        self.check_converted_rows()
        self.assertEqual(check_converted(databases=None), [])

    def test_ids_of_deleted_rows_are_not_handed_out_again(self):
        """SQLite rebuilds the tables, and a rebuilt table's counter would restart at the highest id left."""
        Email = self.apps.get_model(APP, "Email")
        doomed = Email.objects.create(from_email="shop@example.com", to="z@example.com", subject="deleted", status=0)
        Email.objects.filter(pk=doomed.pk).delete()
        call_command("migrate", APP, verbosity=0)
        from post_office import mail

        new = mail.send("new@example.com", "shop@example.com", subject="new", message="x")
        self.assertGreater(new.pk, doomed.pk)

    def test_migrating_back_gives_django_post_office_its_tables_again(self):
        call_command("migrate", APP, verbosity=0)
        migrate_to(DPO_LAST)
        Email = dpo_models().get_model(APP, "Email")
        queued = Email.objects.get(pk=self.rows["queued"])
        self.assertEqual(
            (queued.to, queued.cc, queued.bcc),
            ('"Doe, John" <john@example.com>, jane@example.com', "cc@example.com", ""),
        )
        self.assertEqual((queued.created, queued.scheduled_time), (WHEN, WHEN))
        call_command("migrate", APP, verbosity=0)
        self.check_converted_rows()

    def test_a_conversion_stopped_after_any_operation_is_finished_by_migrate(self):
        """What MariaDB leaves when a migration fails halfway: some operations done, none recorded."""
        executor = MigrationExecutor(connection)
        cuts = [
            (name, cut)
            for name in CONVERSION
            for cut in range(1, len(executor.loader.get_migration(APP, name).operations))
        ]
        self.assertGreater(len(cuts), 20)
        # Every kind of guarded step, and each point of the recipients' swap, where a wrong guess loses data.
        chosen = [("0016_convert_recipients", 3)] + [("0017_convert_recipients_swap", cut) for cut in (1, 3, 4, 6, 8)]
        chosen += [cut for cut in cuts if cut[0] not in {"0016_convert_recipients", "0017_convert_recipients_swap"}][
            ::7
        ]
        for name, cut in chosen:
            with self.subTest(migration=name, after_operation=cut):
                migrate_to("zero")
                migrate_to(DPO_LAST)
                self.apps = dpo_models()
                self.rows = self.fill()
                migrate_to(CONVERSION[CONVERSION.index(name) - 1] if name != CONVERSION[0] else DPO_LAST)
                self.apply_partly(name, cut)
                self.assertIn("stopped after" if name != CONVERSION[0] else "not converted", self.advice())
                call_command("migrate", APP, verbosity=0)
                self.check_converted_rows()

    def apply_partly(self, name: str, cut: int) -> None:
        executor = MigrationExecutor(connection)
        migration = executor.loader.get_migration(APP, name)
        state = executor.loader.project_state((APP, migration.dependencies[0][1]))
        for operation in migration.operations[:cut]:
            new_state = state.clone()
            operation.state_forwards(APP, new_state)
            with connection.schema_editor(atomic=migration.atomic) as editor:
                operation.database_forwards(APP, editor, state, new_state)
            state = new_state
        if name != CONVERSION[0]:
            # Record a step before it so the check can tell "stopped after" from "not started".
            self.assertIn(
                (APP, CONVERSION[CONVERSION.index(name) - 1]), MigrationRecorder(connection).applied_migrations()
            )

    def advice(self) -> str:
        return " ".join(message.msg for message in check_converted(databases=None))


class PreflightTest(TransactionTestCase):
    def setUp(self) -> None:
        self.addCleanup(call_command, "migrate", APP, verbosity=0)
        migrate_to(DPO_LAST)

    def test_templates_that_break_our_rules_stop_the_conversion_before_any_change(self):
        Template = dpo_models().get_model(APP, "EmailTemplate")
        first = Template.objects.create(name="dup")
        second = Template.objects.create(name="dup")
        lonely = Template.objects.create(name="lonely", language="fr")
        with self.assertRaises(ConversionRefused) as refused:
            call_command("migrate", APP, verbosity=0)
        text = str(refused.exception)
        self.assertIn(f"templates #{first.pk} and #{second.pk} have the same name 'dup'", text)
        self.assertIn(f"template #{lonely.pk} 'lonely' has language 'fr' but is not a translation", text)
        self.assertIn("nothing was changed", text)
        applied = {name for app, name in MigrationRecorder(connection).applied_migrations() if app == APP}
        self.assertNotIn(CONVERSION[0], applied)
        with connection.cursor() as cursor:
            columns = {c.name for c in connection.introspection.get_table_description(cursor, "post_office_email")}
        self.assertNotIn("to_list", columns)
        # Fixed by hand, the same migrate goes through.
        second.name = "dup2"
        second.save()
        lonely.delete()
        call_command("migrate", APP, verbosity=0)


class CheckAdviceTest(TestCase):
    """E020 says what to run, from the migrations the database has recorded."""

    def advice(self, applied_now: set[str]) -> list:
        recorder = MigrationRecorder(connection)
        for app, name in list(recorder.applied_migrations()):
            if app == APP and name not in applied_now:
                recorder.record_unapplied(app, name)
        for name in applied_now:
            recorder.record_applied(APP, name)
        return check_converted(databases=None)

    def test_converted_database_is_quiet(self):
        self.assertEqual(check_converted(databases=None), [])

    def test_unconverted_half_converted_and_pre_release_databases(self):
        dpo = {f"{n:04d}" for n in range(1, 15)}
        names = {name for app, name in MigrationRecorder(connection).applied_migrations() if app == APP}
        dpo_names = {name for name in names if name[:4] in dpo}
        (error,) = self.advice(dpo_names)
        self.assertEqual(error.id, "post_office.E020")
        self.assertIn("are django-post_office's and not converted yet", error.msg)
        self.assertIn("python manage.py migrate post_office", error.msg)
        (error,) = self.advice(dpo_names | {"0015_convert_preflight", "0016_convert_recipients"})
        self.assertIn("stopped after 0016_convert_recipients", error.msg)
        (error,) = self.advice({"0001_queue_schema", "0010_email_admin_indexes"})
        self.assertIn("migrate post_office 0022_convert_queue_tables --fake", error.msg)
        (warning,) = check_converted(databases=["default"])
        self.assertEqual(warning.id, "post_office.W020")  # under migrate, which converts: a warning only


class FreshDatabaseTest(TestCase):
    def test_a_fresh_database_records_django_post_office_names_too(self):
        applied = {name for app, name in MigrationRecorder(connection).applied_migrations() if app == APP}
        self.assertIn("0011_models_help_text", applied)
        self.assertIn(CONVERSION[-1], applied)


class RepairSchemaTest(TransactionTestCase):
    """What a migrate killed on MariaDB can leave out (held-back indexes, a foreign key between drop and re-add)."""

    def constraints(self, table: str) -> dict:
        with connection.cursor() as cursor:
            return connection.introspection.get_constraints(cursor, table)

    def test_missing_indexes_and_foreign_keys_are_created_again(self):
        from post_office.migrations._conversion import RepairSchema

        self.addCleanup(call_command, "migrate", APP, verbosity=0)
        table = "post_office_attachment"
        (index,) = [
            name
            for name, info in self.constraints(table).items()
            if info["index"]
            and not info["unique"]
            and info["columns"] == ["content_hash"]
            and not name.endswith("_like")
        ]
        version_fks = [
            name for name, info in self.constraints("post_office_emailtemplateversion").items() if info["foreign_key"]
        ]
        with connection.schema_editor() as editor:
            on_table = f" ON {editor.quote_name(table)}" if connection.vendor == "mysql" else ""
            editor.execute(f"DROP INDEX {editor.quote_name(index)}{on_table}")
            if connection.vendor != "sqlite":  # SQLite cannot drop a foreign key (nor lose one: it rolls back)
                drop = "DROP FOREIGN KEY" if connection.vendor == "mysql" else "DROP CONSTRAINT"
                for name in version_fks:
                    editor.execute(f"ALTER TABLE post_office_emailtemplateversion {drop} {editor.quote_name(name)}")
        self.assertFalse(
            any(
                info["columns"] == ["content_hash"]
                and info["index"]
                and not info["unique"]
                and not name.endswith("_like")
                for name, info in self.constraints(table).items()
            )
        )
        executor = MigrationExecutor(connection)
        state = executor.loader.project_state((APP, CONVERSION[-1]))
        with connection.schema_editor() as editor:
            RepairSchema().database_forwards(APP, editor, state, state)
        self.assertTrue(
            any(info["columns"] == ["content_hash"] and info["index"] for info in self.constraints(table).values())
        )
        if connection.vendor != "sqlite":
            self.assertTrue(
                any(info["foreign_key"] for info in self.constraints("post_office_emailtemplateversion").values())
            )
        with connection.schema_editor() as editor:  # nothing missing: nothing done
            RepairSchema().database_forwards(APP, editor, state, state)
            self.assertEqual(editor.deferred_sql, [])
