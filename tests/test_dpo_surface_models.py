"""django-post_office's public surface, part 1: the models (docs/migrating.rst, "Every name, compared").

Each test is written from django-post_office 3.12's documented behaviour: what a
project calls on ``Email``, ``EmailTemplate``, ``Attachment`` and ``Log``.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from django.core import mail as django_mail
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.core.management import call_command
from django.db import connection
from django.test import TestCase, TransactionTestCase
from django.utils import timezone

from post_office import mail
from post_office.exceptions import InvalidAddress, InvalidSchedule
from post_office.models import (
    PRIORITY,
    STATUS,
    Attachment,
    Email,
    EmailTemplate,
    EmailTemplateManager,
    Log,
    RecipientDeliveryStatus,
    get_upload_path,
)
from tests.backends import ScriptedBackend
from tests.helpers import LOCMEM, QueueTestMixin

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SENDER = "shop@example.com"


class PackageTest(TestCase):
    def test_version_names(self):
        import post_office

        self.assertEqual(post_office.VERSION_STRING, post_office.__version__)
        self.assertEqual(".".join(str(part) for part in post_office.VERSION), post_office.VERSION_STRING)
        self.assertIs(post_office.EmailBackend, __import__("post_office.backends").backends.EmailBackend)


class FieldNamesTest(TestCase):
    def test_the_models_have_django_post_offices_fields(self):
        expected = {
            Email: "from_email to cc bcc subject message html_message status recipient_delivery_status priority "
            "created last_updated scheduled_time expires_at message_id number_of_retries headers template context "
            "backend_alias",
            Log: "email date status exception_type message",
            EmailTemplate: "name description created last_updated subject content html_content language "
            "default_template",
            Attachment: "file name emails mimetype headers",
        }
        for model, names in expected.items():
            with self.subTest(model.__name__):
                have = {field.name for field in model._meta.get_fields()}
                self.assertLessEqual(set(names.split()), have)
        self.assertEqual(
            EmailTemplate._meta.get_field("default_template").remote_field.related_name, "translated_templates"
        )
        self.assertEqual(Attachment._meta.get_field("emails").remote_field.related_name, "attachments")

    def test_the_app_config(self):
        from django.apps import apps

        config = apps.get_app_config("post_office")
        self.assertEqual(
            (type(config).__name__, config.name, config.label), ("PostOfficeConfig", "post_office", "post_office")
        )

    def test_django_send_mail_through_the_queue_reports_the_message_queued(self):
        # A difference (docs/migrating.rst): django-post_office's backend returned 0 for queued mail.
        from django.core.mail import send_mail

        from tests.helpers import queueing

        with queueing():
            self.assertEqual(send_mail("Hi", "Hello", SENDER, ["a@example.com"]), 1)
        self.assertEqual(Email.objects.get().subject, "Hi")


class ChoicesTest(TestCase):
    def test_priorities_and_statuses_keep_their_values_and_names(self):
        self.assertEqual((PRIORITY.low, PRIORITY.medium, PRIORITY.high, PRIORITY.now), (0, 1, 2, 3))
        self.assertEqual((STATUS.sent, STATUS.failed, STATUS.queued, STATUS.requeued), (0, 1, 2, 3))
        self.assertEqual(getattr(PRIORITY, "high"), 2)
        self.assertIs(Email.PRIORITY, PRIORITY)
        self.assertIn((PRIORITY.now, "now"), [(value, str(label)) for value, label in Email.PRIORITY_CHOICES])
        self.assertIn((STATUS.requeued, "requeued"), [(value, str(label)) for value, label in Email.STATUS_CHOICES])

    def test_recipient_delivery_status_values_are_stored_on_emails_and_logs(self):
        expected = {
            "ACCEPTED": 10,
            "DELIVERED": 20,
            "OPENED": 30,
            "CLICKED": 40,
            "DEFERRED": 50,
            "SOFT_BOUNCED": 60,
            "UNDETERMINED_BOUNCED": 65,
            "HARD_BOUNCED": 70,
            "SPAM_COMPLAINT": 80,
            "UNSUBSCRIBED": 90,
        }
        self.assertEqual({member.name: member.value for member in RecipientDeliveryStatus}, expected)
        email = mail.send("ann@example.com", SENDER, subject="s", message="m")
        Email.objects.filter(pk=email.pk).update(recipient_delivery_status=RecipientDeliveryStatus.HARD_BOUNCED)
        Log.objects.create(email=email, status=RecipientDeliveryStatus.HARD_BOUNCED, message="550 from the provider")
        email.refresh_from_db()
        self.assertEqual(email.get_recipient_delivery_status_display(), "Hard Bounced")
        self.assertEqual(Log.objects.get(email=email).get_status_display(), "Hard Bounced")


class EmailThroughTheOrmTest(QueueTestMixin, TestCase):
    """``Email.objects.create(...)`` without naming every field, as projects did with django-post_office."""

    backends = {"default": LOCMEM}

    def test_an_email_created_with_a_few_fields_is_queued_and_delivered(self):
        email = Email.objects.create(from_email=SENDER, to="ann@example.com", subject="Hi", message="Hello")
        email.refresh_from_db()
        self.assertEqual(email.to, ["ann@example.com"])
        self.assertEqual((email.cc, email.bcc, email.headers, email.context), ([], [], None, None))
        self.assertEqual((email.status, email.priority, email.number_of_retries), (STATUS.queued, PRIORITY.medium, 0))
        self.assertEqual(mail.send_queued(), (1, 0, 0))
        [message] = django_mail.outbox
        self.assertEqual((message.to, message.subject, message.body), (["ann@example.com"], "Hi", "Hello"))

    def test_recipients_given_as_text_are_split_at_commas_but_never_inside_a_quoted_name(self):
        email = Email.objects.create(
            from_email=SENDER,
            to='ann@example.com, "Doe, John" <john@example.com>',
            cc="Bob <bob@example.com>",
            bcc="",
            subject="s",
        )
        email.refresh_from_db()
        self.assertEqual(email.to, ["ann@example.com", '"Doe, John" <john@example.com>'])
        self.assertEqual((email.cc, email.bcc), (["Bob <bob@example.com>"], []))

    def test_a_list_stays_a_list_and_none_means_no_priority_set(self):
        email = Email.objects.create(from_email=SENDER, to=["a@example.com", "b@example.com"], priority=None)
        self.assertEqual((email.to, email.priority), (["a@example.com", "b@example.com"], PRIORITY.medium))

    def test_bad_input_raises_validation_errors_and_stores_nothing(self):
        cases = [
            ({"to": "not an address"}, InvalidAddress),
            ({"to": "a@example.com", "from_email": "nobody"}, InvalidAddress),
            ({"to": "a@example.com", "subject": "Hi\r\nBcc: x@example.com"}, ValidationError),
            (
                {
                    "to": "a@example.com",
                    "scheduled_time": timezone.now() + datetime.timedelta(days=2),
                    "expires_at": timezone.now() + datetime.timedelta(days=1),
                },
                InvalidSchedule,
            ),
        ]
        for fields, error in cases:
            with self.subTest(fields=fields), self.assertRaises(error) as raised:
                Email.objects.create(**{"from_email": SENDER, **fields})
            self.assertIsInstance(raised.exception, ValidationError)
        self.assertFalse(Email.objects.exists())

    def test_full_clean_refuses_a_schedule_after_the_expiry(self):
        now = timezone.now()
        email = Email(from_email=SENDER, to=["a@example.com"], scheduled_time=now, expires_at=now, subject="s")
        email.full_clean()
        email.scheduled_time = now + datetime.timedelta(hours=1)
        with self.assertRaises(ValidationError):
            email.full_clean()

    def test_str_and_repr(self):
        email = Email.objects.create(from_email=SENDER, to=["a@example.com", "Bob <b@example.com>"], subject="s")
        self.assertEqual(str(email), "a@example.com, Bob <b@example.com>")
        self.assertEqual(repr(email), "<Email: ['a@example.com', 'Bob <b@example.com>']>")
        only_bcc = Email.objects.create(from_email=SENDER, bcc=["hidden@example.com"], subject="s")
        # A difference (docs/migrating.rst): django-post_office showed "", which left admin links blank.
        self.assertEqual(str(only_bcc), f"Email #{only_bcc.pk}")

    def test_email_message_and_prepare_email_message_build_what_is_sent(self):
        email = mail.send(
            ["ann@example.com"],
            SENDER,
            subject="Hello",
            message="plain",
            html_message="<p>html</p>",
            headers={"X-A": "1"},
        )
        for method in (email.email_message, email.prepare_email_message):
            with self.subTest(method.__name__):
                message = method()
                self.assertEqual((message.subject, message.body, message.to), ("Hello", "plain", ["ann@example.com"]))
                self.assertEqual(message.alternatives[0][0], "<p>html</p>")
                self.assertEqual(message.extra_headers["X-A"], "1")


class DispatchTest(QueueTestMixin, TestCase):
    backends = {"default": LOCMEM, "scripted": "tests.backends.ScriptedBackend"}

    def setUp(self):
        super().setUp()
        ScriptedBackend.reset()

    def test_dispatch_sends_records_and_returns_the_status(self):
        email = self.queue("dispatched")
        self.assertEqual(email.dispatch(), STATUS.sent)
        self.assertEqual(Email.objects.get(pk=email.pk).status, STATUS.sent)
        self.assertEqual([m.subject for m in django_mail.outbox], ["dispatched"])
        self.assertEqual(Log.objects.get(email=email).status, STATUS.sent)

    def test_dispatch_through_a_given_connection_leaves_it_open(self):
        email = self.queue("given connection", backend="scripted")
        connection = LocmemBackend()
        connection.open()
        closed = []
        connection.close = lambda: closed.append(True)  # type: ignore[method-assign]
        self.assertEqual(email.dispatch(connection=connection, disconnect_after_delivery=False), STATUS.sent)
        self.assertEqual([m.subject for m in django_mail.outbox], ["given connection"])
        self.assertEqual(ScriptedBackend.attempts, [], "the email's own backend was not used")
        self.assertEqual(closed, [])

    def test_dispatch_without_commit_raises_a_failure_and_records_nothing(self):
        ScriptedBackend.error_for_all = RuntimeError("the server said no")
        email = self.queue("failing", backend="scripted")
        with self.assertRaisesMessage(RuntimeError, "the server said no"):
            email.dispatch(commit=False)
        self.assertEqual(Email.objects.get(pk=email.pk).status, STATUS.queued)
        self.assertFalse(Log.objects.exists())
        with self.po(MAX_RETRIES=0):
            self.assertEqual(email.dispatch(), STATUS.failed)
        self.assertEqual(Log.objects.get(email=email).exception_type, "RuntimeError")


class TemplateModelTest(TestCase):
    def test_str_is_the_name_and_the_language(self):
        base = EmailTemplate.objects.create(name="welcome", subject="Hi")
        german = base.translated_templates.create(language="de", subject="Hallo")
        self.assertEqual((str(base), str(german)), ("welcome ", "welcome de"))

    def test_a_translation_takes_its_base_templates_name(self):
        base = EmailTemplate.objects.create(name="hello", subject="Hello world!")
        german = base.translated_templates.create(language="de", subject="Hallo Welt!")
        self.assertEqual((german.name, german.default_template), ("hello", base))

    def test_natural_keys(self):
        base = EmailTemplate.objects.create(name="welcome", subject="Hi")
        german = base.translated_templates.create(language="de", subject="Hallo")
        self.assertIsInstance(EmailTemplate.objects, EmailTemplateManager)
        self.assertEqual(base.natural_key(), ("welcome", "", None))
        self.assertEqual(german.natural_key(), ("welcome", "de", ("welcome", "", None)))
        self.assertEqual(EmailTemplate.objects.get_by_natural_key("welcome", "", None), base)
        self.assertEqual(EmailTemplate.objects.get_by_natural_key(*german.natural_key()), german)
        self.assertEqual(EmailTemplate.objects.get_by_natural_key("welcome", "de", base.pk), german)
        with self.assertRaises(EmailTemplate.DoesNotExist):
            EmailTemplate.objects.get_by_natural_key("welcome", "fr", None)


class FixturesTest(TestCase):
    """Fixtures made with ``dumpdata --natural-foreign --natural-primary`` load."""

    def dump(self, *labels: str) -> str:
        handle, path = tempfile.mkstemp(suffix=".json")
        os.close(handle)
        self.addCleanup(os.remove, path)
        call_command("dumpdata", *labels, natural_foreign=True, natural_primary=True, output=path, verbosity=0)
        return path

    def test_templates_with_translations_and_emails_pointing_to_them_load_into_an_empty_database(self):
        base = EmailTemplate.objects.create(name="welcome", description="d", subject="Hi {{ n }}", content="c")
        base.translated_templates.create(language="de", subject="Hallo {{ n }}", html_content="<p>h</p>")
        base.translated_templates.create(language="fr", subject="Salut")
        EmailTemplate.objects.create(name="receipt", subject="Receipt")
        to_base = mail.send("a@example.com", SENDER, template="welcome", context={"n": 1})
        to_german = mail.send("b@example.com", SENDER, template="welcome", language="de", context={"n": 2})
        before = list(EmailTemplate.objects.values_list("name", "language", "subject", "default_template__name"))
        path = self.dump("post_office.emailtemplate", "post_office.email")

        Email.objects.all().delete()
        EmailTemplate.objects.all().delete()
        call_command("loaddata", path, verbosity=0)
        after = list(EmailTemplate.objects.values_list("name", "language", "subject", "default_template__name"))
        self.assertEqual(after, before)
        self.assertEqual(Email.objects.get(pk=to_base.pk).template.natural_key(), ("welcome", "", None))
        self.assertEqual(Email.objects.get(pk=to_german.pk).template.language, "de")
        # Loaded again: the natural keys find the rows, nothing is duplicated.
        call_command("loaddata", path, verbosity=0)
        self.assertEqual(EmailTemplate.objects.count(), 4)

    def test_a_fixture_django_post_office_made_loads(self):
        # Made by django-post_office 3.12.0's own dumpdata --natural-foreign --natural-primary.
        call_command("loaddata", str(FIXTURES / "dpo_3_12_templates.json"), verbosity=0)
        rows = set(EmailTemplate.objects.values_list("name", "language", "default_template__name"))
        self.assertEqual(
            rows,
            {("welcome", "", None), ("welcome", "de", "welcome"), ("welcome", "fr", "welcome"), ("receipt", "", None)},
        )
        call_command("loaddata", str(FIXTURES / "dpo_3_12_templates.json"), verbosity=0)
        self.assertEqual(EmailTemplate.objects.count(), 4)
        email = mail.send("a@example.com", SENDER, template="welcome", language="de", context={"name": "Ann"})
        self.assertEqual(email.subject, "Willkommen, Ann")

    def test_emails_django_post_office_dumped_load_with_their_recipients_as_lists(self):
        # Its dumpdata wrote recipients as "['a@example.com', ...]" and NULL priority and retries.
        call_command("loaddata", str(FIXTURES / "dpo_3_12_templates.json"), verbosity=0)
        call_command("loaddata", str(FIXTURES / "dpo_3_12_emails.json"), verbosity=0)
        first, second = Email.objects.order_by("pk")
        self.assertEqual(first.to, ["ann@example.com", "Bob <bob@example.com>"])
        self.assertEqual((first.cc, first.bcc), (["cc@example.com"], []))
        self.assertEqual((first.status, first.priority, first.template.name), (STATUS.queued, PRIORITY.high, "welcome"))
        self.assertEqual((second.priority, second.number_of_retries), (PRIORITY.medium, 0))
        self.assertEqual(Log.objects.get().email, second)
        self.assertEqual(json.loads(json.dumps(first.headers)), {"X-Order": "42"})


class FixturesAsCommandsTest(TransactionTestCase):
    """The same round trip with ``manage.py dumpdata`` and ``loaddata`` run as a user runs them."""

    def manage(self, *args: str, database: tuple[str, str] | None = None) -> str:
        """Run manage.py on the test database, or on ``database`` (vendor, name)."""
        vendor, name = database or (os.environ.get("POST_OFFICE_TEST_DB", "sqlite"), connection.settings_dict["NAME"])
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "POST_OFFICE_TEST_DB": vendor,
            "POST_OFFICE_DB_NAME": str(name),
        }
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def test_dumpdata_then_loaddata_into_empty_tables(self):
        base = EmailTemplate.objects.create(name="welcome", subject="Hi")
        base.translated_templates.create(language="de", subject="Hallo")
        email = mail.send("a@example.com", SENDER, template="welcome", language="de")
        path = Path(tempfile.mkdtemp()) / "templates.json"
        self.addCleanup(path.unlink, missing_ok=True)
        self.manage(
            "dumpdata",
            "post_office.emailtemplate",
            "post_office.email",
            "--natural-foreign",
            "--natural-primary",
            "-o",
            str(path),
        )
        Email.objects.all().delete()
        EmailTemplate.objects.all().delete()
        self.assertIn("Installed 3 object(s)", self.manage("loaddata", str(path)))
        loaded = Email.objects.get(pk=email.pk)
        self.assertEqual(
            (loaded.template.name, loaded.template.language, loaded.to), ("welcome", "de", ["a@example.com"])
        )
        # And into a database just made by migrate (SQLite, whatever this test runs on).
        fresh = path.parent / "fresh.sqlite3"
        self.addCleanup(fresh.unlink, missing_ok=True)
        self.manage("migrate", "-v0", database=("sqlite", str(fresh)))
        self.assertIn("Installed 3 object(s)", self.manage("loaddata", str(path), database=("sqlite", str(fresh))))
        shown = self.manage(
            "shell",
            "-c",
            "from post_office.models import Email; e = Email.objects.get(); print(e.template, e.to)",
            database=("sqlite", str(fresh)),
        )
        self.assertEqual(shown.strip().splitlines()[-1], "welcome de ['a@example.com']")


class AttachmentModelTest(QueueTestMixin, TestCase):
    backends = {"default": LOCMEM}

    def test_name_defaults_to_the_files_name_and_the_stored_name_is_random(self):
        created = Attachment.objects.create(file=ContentFile(b"%PDF-1.4", name="report.pdf"))
        saved = Attachment()
        saved.file.save("invoice.pdf", ContentFile(b"%PDF-1.4 invoice"))
        named = Attachment.objects.create(file=ContentFile(b"x", name="x.txt"), name="notes.txt")
        self.assertEqual((created.name, saved.name, named.name), ("report.pdf", "invoice.pdf", "notes.txt"))
        for attachment in (created, saved):
            with self.subTest(attachment.name):
                self.assertEqual(str(attachment), attachment.name)
                self.assertTrue(attachment.file.name.startswith("post_office_attachments/"))
                self.assertRegex(attachment.file.name, r"/[0-9a-f]{32}/" + attachment.name.replace(".", r"\.") + "$")
        self.assertNotEqual(
            created.file.name, Attachment.objects.create(file=ContentFile(b"y", name="report.pdf")).file.name
        )

    def test_an_attachment_made_through_the_orm_is_sent_with_its_email(self):
        attachment = Attachment.objects.create(
            file=ContentFile(b"%PDF-1.4", name="report.pdf"), mimetype="application/pdf"
        )
        email = mail.send("a@example.com", SENDER, subject="with attachment", message="see attached")
        email.attachments.add(attachment)
        self.assertEqual(mail.send_queued(), (1, 0, 0))
        [message] = django_mail.outbox
        self.assertEqual(message.attachments[0][0], "report.pdf")

    def test_get_upload_path_names_the_attachment_and_picks_a_random_path(self):
        attachment = Attachment()
        path = get_upload_path(attachment, "photo.png")
        self.assertEqual(attachment.name, "photo.png")
        self.assertRegex(path, r"^post_office_attachments/.+/photo\.png$")
        self.assertNotEqual(path, get_upload_path(attachment, "photo.png"))
        attachment.name = "kept.png"
        get_upload_path(attachment, "other.png")
        self.assertEqual(attachment.name, "kept.png")


class LogModelTest(TestCase):
    def test_str_is_the_date(self):
        email = mail.send("a@example.com", SENDER, subject="s")
        log = Log.objects.create(email=email, status=STATUS.sent, message="")
        self.assertEqual(str(log), str(log.date))
