"""import_mailer_queue on tables shaped like django-mailer's, made here (no django-mailer needed).

The tables are made from models declaring django-mailer 2.3.2's columns, in a registry of their own,
and filled with messages pickled the way django-mailer pickles them. The full switch, with django-mailer
itself filling the database, is tests/switch_mailer (``make test-switch-mailer``).
"""

from __future__ import annotations

import base64
import datetime
import io
import os
import pickle
from email.message import MIMEPart
from email.mime.image import MIMEImage
from email.mime.text import MIMEText
from typing import Any
from unittest import mock

from django.apps.registry import Apps
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.management import CommandError, call_command
from django.db import connection, models
from django.test import TestCase
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy

from post_office.models import STATUS, DoNotSendEntry, Email, ImportedRow, Log
from post_office.switch.mailer_pickle import Refused, Unreadable, load_message

MAILER_APPS = Apps()


class MailerMessage(models.Model):
    message_data = models.TextField()
    when_added = models.DateTimeField()
    priority = models.PositiveSmallIntegerField(default=2)
    retry_count = models.IntegerField(default=0)

    class Meta:
        apps = MAILER_APPS
        app_label = "mailer"
        db_table = "mailer_message"


class MailerLog(models.Model):
    message_data = models.TextField(null=True)
    message_id = models.TextField(null=True)
    when_added = models.DateTimeField()
    priority = models.PositiveSmallIntegerField()
    when_attempted = models.DateTimeField()
    result = models.CharField(max_length=1)
    log_message = models.TextField()

    class Meta:
        apps = MAILER_APPS
        app_label = "mailer"
        db_table = "mailer_messagelog"


class MailerDontSend(models.Model):
    to_address = models.EmailField(max_length=254)
    when_added = models.DateTimeField()

    class Meta:
        apps = MAILER_APPS
        app_label = "mailer"
        db_table = "mailer_dontsendentry"


TABLES = (MailerMessage, MailerLog, MailerDontSend)
T0 = datetime.datetime(2025, 3, 1, 9, 0, 0, 123456, tzinfo=datetime.UTC)


def pickled(message: Any, protocol: int | None = None) -> str:
    """As django-mailer stores a message: base64 text of its pickle."""
    return base64.encodebytes(pickle.dumps(message, protocol=protocol)).decode("ascii")


def plain(subject: str, to: list[str] | None = None, **kwargs: Any) -> EmailMessage:
    return EmailMessage(subject, f"body of {subject}", "shop@example.com", to or ["to@example.com"], **kwargs)


class Evil:
    def __reduce__(self) -> Any:
        return (os.system, ("echo pwned",))


class Subclassed(EmailMessage):
    """A subclass the reader does not know: refused, as anything else not on its list."""


class PickleReaderTest(TestCase):
    def test_a_rich_message_comes_back_whole(self):
        message = EmailMultiAlternatives(
            "Rich",
            mark_safe("text"),
            "Shop <shop@example.com>",
            ['"Doe, J" <j@example.com>'],
            cc=["c@example.com"],
            reply_to=["r@example.com"],
            headers={"X-Order": "42"},
        )
        message.attach_alternative(mark_safe("<p>html</p>"), "text/html")
        message.attach_alternative("BEGIN:VCALENDAR", "text/calendar")
        message.attach("a.txt", "text", "text/plain")
        message.attach("b.bin", b"\x00\xff", "application/octet-stream")
        image = MIMEImage(b"GIF89a", "gif")
        image.add_header("Content-ID", "<img>")
        message.attach(image)
        message.attach(MIMEText("Grüße", "plain", "utf-8"))
        modern = MIMEPart()
        modern.set_content(b"%PDF", maintype="application", subtype="pdf", filename="c.pdf")
        message.attachments.append(modern)  # what Django 6's attach() does with a MIMEPart
        loaded = load_message(pickled(message))
        self.assertIsInstance(loaded, EmailMultiAlternatives)
        self.assertEqual((loaded.subject, loaded.body, loaded.to, loaded.cc), ("Rich", "text", message.to, message.cc))
        self.assertEqual([tuple(a) for a in loaded.alternatives], [tuple(a) for a in message.alternatives])
        self.assertEqual(loaded.attachments[:2], message.attachments[:2])
        self.assertEqual(loaded.attachments[2]["Content-ID"], "<img>")
        self.assertEqual(loaded.attachments[3].get_payload(decode=True).decode(), "Grüße")
        self.assertEqual(loaded.attachments[4].get_content(), b"%PDF")

    def test_every_pickle_protocol_and_an_early_versions_raw_pickle(self):
        message = plain("protocols")
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            with self.subTest(protocol=protocol):
                self.assertEqual(load_message(pickled(message, protocol)).subject, "protocols")
        raw = pickle.dumps(message, protocol=0).decode("latin-1")
        self.assertEqual(load_message(raw).subject, "protocols")

    def test_anything_else_is_refused_and_never_run(self):
        evil = pickled(Evil())
        with mock.patch("os.system") as system:
            with self.assertRaisesMessage(Refused, "names posix.system"):
                load_message(evil)
            system.assert_not_called()
        with self.assertRaisesMessage(Refused, "tests.test_import_mailer.Subclassed"):
            load_message(pickled(Subclassed("s", "b", "a@example.com", ["b@example.com"])))
        with self.assertRaisesMessage(Refused, "django.utils.functional._lazy_proxy_unpickle"):
            load_message(pickled(plain(gettext_lazy("lazy subject"))))
        with self.assertRaisesMessage(Refused, "builtins.eval"):
            load_message(base64.encodebytes(b"cbuiltins\neval\n(S'1+1'\ntR.").decode())

    def test_unreadable_rows_say_why(self):
        for data, why in [
            ("", "its message_data is empty"),
            (None, "its message_data is empty"),
            ("!!! not a pickle", "cannot be unpickled"),
            (pickled({"subject": "x"}), "holds a dict, not a Django EmailMessage"),
            (pickled(plain("x"))[:40], "cannot be unpickled"),
            ("Grüße ☃", "cannot be unpickled"),
        ]:
            with self.subTest(data=data), self.assertRaisesMessage(Unreadable, why):
                load_message(data)


class MailerTablesTestCase(TestCase):
    """Tests with django-mailer's three tables in the test database."""

    @classmethod
    def setUpClass(cls) -> None:
        with connection.schema_editor() as editor:
            for model in TABLES:
                editor.create_model(model)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        with connection.schema_editor() as editor:
            for model in TABLES:
                editor.delete_model(model)

    def run_import(self, *args: str) -> list[str]:
        out = io.StringIO()
        call_command("import_mailer_queue", *args, stdout=out)
        return out.getvalue().splitlines()

    def queue(
        self, message: Any, priority: int = 2, retry_count: int = 0, when: datetime.datetime = T0
    ) -> MailerMessage:
        return MailerMessage.objects.create(
            message_data=message if isinstance(message, str) else pickled(message),
            when_added=when,
            priority=priority,
            retry_count=retry_count,
        )

    def log(
        self,
        message: Any,
        result: str,
        when_added: datetime.datetime = T0,
        minutes: int = 1,
        text: str = "",
        message_id: str | None = None,
    ) -> MailerLog:
        data = message if message is None or isinstance(message, str) else pickled(message)
        return MailerLog.objects.create(
            message_data=data,
            message_id=message_id,
            when_added=when_added,
            priority=2,
            when_attempted=when_added + datetime.timedelta(minutes=minutes),
            result=result,
            log_message=text,
        )


class ImportTest(MailerTablesTestCase):
    def test_queue_priorities_retries_and_dates(self):
        self.queue(plain("high"), priority=1)
        self.queue(plain("medium"), priority=2, when=T0 + datetime.timedelta(seconds=1))
        self.queue(plain("low"), priority=3)
        self.queue(plain("deferred"), priority=4, retry_count=3)
        self.queue(plain("retried"), priority=2, retry_count=1)
        self.assertEqual(
            self.run_import()[2],
            "  messages: 5 imported (3 queued, 2 requeued after deferral or retry), 0 already imported, 0 unreadable",
        )
        got = {e.subject: (e.status, e.priority, e.number_of_retries) for e in Email.objects.all()}
        self.assertEqual(
            got,
            {
                "high": (STATUS.queued, 2, 0),
                "medium": (STATUS.queued, 1, 0),
                "low": (STATUS.queued, 0, 0),
                "deferred": (STATUS.requeued, 1, 3),
                "retried": (STATUS.requeued, 1, 1),
            },
        )
        self.assertEqual(Email.objects.get(subject="medium").created, T0 + datetime.timedelta(seconds=1))

    def test_dry_run_writes_nothing_and_a_second_run_imports_nothing(self):
        self.queue(plain("one"))
        self.log(plain("gone"), "1")
        MailerDontSend.objects.create(to_address="x@example.com", when_added=T0)
        dry = self.run_import("--dry-run")
        self.assertIn("dry run: nothing was written", dry[0])
        self.assertEqual(
            (Email.objects.count(), DoNotSendEntry.objects.count(), ImportedRow.objects.count()), (0, 0, 0)
        )
        first = self.run_import()
        # The dry run said exactly what would be imported.
        self.assertEqual(first[1:], [line.replace("to import", "imported") for line in dry[1:]])
        self.assertEqual((Email.objects.count(), Log.objects.count(), DoNotSendEntry.objects.count()), (2, 1, 1))
        second = self.run_import()
        self.assertIn("0 imported, 0 already on the list, 1 already imported", second[1])
        self.assertIn("0 imported (0 queued, 0 requeued after deferral or retry), 1 already imported", second[2])
        self.assertIn("0 imported, with 0 emails rebuilt from them (0 sent, 0 failed), 1 already imported", second[3])
        self.assertEqual((Email.objects.count(), Log.objects.count(), DoNotSendEntry.objects.count()), (2, 1, 1))

    def test_logs_find_their_email_across_batches_and_runs(self):
        deferred = plain("deferred")
        self.queue(deferred, priority=4, retry_count=1)
        flaky = plain("flaky")
        self.log(flaky, "3", text="refused")
        self.log(deferred, "3", minutes=2, text="timeout")
        sent = EmailMessage(
            "flaky", "body of flaky", "shop@example.com", ["to@example.com"], headers={"Message-ID": "<f@x>"}
        )
        self.log(sent, "1", minutes=3, message_id="<f@x>")
        lines = self.run_import("--batch-size", "1")
        self.assertIn("3 imported, with 1 emails rebuilt from them (1 sent, 0 failed)", lines[3])
        flaky_email = Email.objects.get(subject="flaky")
        self.assertEqual((flaky_email.status, flaky_email.message_id), (STATUS.sent, "<f@x>"))
        self.assertEqual(
            [(log.status, log.message) for log in flaky_email.logs.order_by("date")],
            [(STATUS.failed, "refused"), (STATUS.sent, "")],
        )
        self.assertEqual(flaky_email.logs.order_by("date").first().date, T0 + datetime.timedelta(minutes=1))
        self.assertEqual(
            list(Email.objects.get(subject="deferred").logs.values_list("message", flat=True)), ["timeout"]
        )
        # A log written after the first run still finds the email of its message.
        self.log(deferred, "3", minutes=9, text="later")
        self.assertIn("1 imported, with 0 emails rebuilt", self.run_import()[3])
        self.assertEqual(Email.objects.get(subject="deferred").logs.count(), 2)
        self.assertEqual(Email.objects.count(), 2)

    def test_a_logged_success_of_a_queued_message_is_not_sent_again(self):
        message = plain("crashed after sending")
        self.queue(message)
        self.log(message, "1", message_id="<sent@x>")
        lines = self.run_import()
        self.assertEqual(lines[3], "    of which 1 imported as sent: a logged success shows they were sent")
        email = Email.objects.get()
        self.assertEqual((email.status, email.message_id), (STATUS.sent, "<sent@x>"))

    def test_logs_without_a_copy_of_their_message(self):
        sent = EmailMessage("s", "b", "shop@example.com", ["to@example.com"], headers={"Message-ID": "<known@x>"})
        self.log(sent, "1", message_id="<known@x>")
        found = self.log(None, "1", message_id="<known@x>", minutes=5)
        lost = self.log(None, "3", text="no copy")
        lines = self.run_import()
        self.assertIn("2 imported, with 1 emails rebuilt", lines[3])
        self.assertIn(
            f"  mailer_messagelog #{lost.pk}: holds no copy of its message and no imported email has its Message-ID",
            lines,
        )
        self.assertEqual(Email.objects.get().logs.count(), 2)
        self.assertTrue(ImportedRow.objects.filter(source="mailer_messagelog", source_id=found.pk).exists())

    def test_unreadable_rows_are_reported_and_the_rest_imported(self):
        bad = [
            self.queue("garbage!!"),
            self.queue(pickled(Evil())),
            self.queue(plain(gettext_lazy("lazy"))),
            self.queue(plain("no one", to=["not an address"])),
        ]
        self.queue(plain("fine"))
        lines = self.run_import()
        self.assertIn(
            "1 imported (1 queued, 0 requeued after deferral or retry), 0 already imported, 4 unreadable", lines[2]
        )
        reported = [line for line in lines if line.startswith("  mailer_message #")]
        self.assertEqual([int(line.split("#")[1].split(":")[0]) for line in reported], [m.pk for m in bad])
        self.assertIn("cannot be queued: recipients: 'not an address' is not a valid email address", reported[3])
        self.assertEqual(list(Email.objects.values_list("subject", flat=True)), ["fine"])
        # Unreadable rows are not recorded: a later run reports them again (they may have been fixed).
        self.assertEqual(len([line for line in self.run_import() if line.startswith("  mailer_message #")]), 4)

    def test_do_not_send_entries(self):
        MailerDontSend.objects.create(to_address="Bob@Example.com", when_added=T0)
        MailerDontSend.objects.create(to_address="bob@example.COM", when_added=T0)
        MailerDontSend.objects.create(to_address="bad", when_added=T0)
        DoNotSendEntry.objects.add("known@example.com")
        MailerDontSend.objects.create(to_address="KNOWN@example.com", when_added=T0)
        lines = self.run_import()
        self.assertEqual(
            lines[1], "  do-not-send entries: 1 imported, 2 already on the list, 0 already imported, 1 unreadable"
        )
        entry = DoNotSendEntry.objects.get(address="bob@example.com")
        self.assertEqual((entry.reason, entry.created), ("django-mailer", T0))
        # The imported list applies when the queue is delivered.
        self.queue(plain("to bob", to=["BOB@example.com", "ann@example.com"]))
        self.run_import()
        call_command("send_queued_mail", verbosity=0)
        email = Email.objects.get(subject="to bob")
        self.assertEqual((email.status, email.to), (STATUS.sent, ["ann@example.com"]))

    def test_a_crash_mid_run_loses_nothing_and_duplicates_nothing(self):
        for n in range(4):
            self.queue(plain(f"m{n}", attachments=[("f.txt", f"file {n}", "text/plain")]))
        real = __import__("post_office.switch.mailer", fromlist=["store_attachments"]).store_attachments
        calls = []

        def failing(items: Any) -> None:
            calls.append(items)
            if len(calls) == 2:
                raise OSError("disk full")
            real(items)

        with mock.patch("post_office.switch.mailer.store_attachments", failing), self.assertRaises(OSError):
            self.run_import("--batch-size", "2")
        self.assertEqual(sorted(Email.objects.values_list("subject", flat=True)), ["m0", "m1"])
        self.assertIn(
            "2 imported (2 queued, 0 requeued after deferral or retry), 2 already imported", self.run_import()[2]
        )
        self.assertEqual(sorted(Email.objects.values_list("subject", flat=True)), ["m0", "m1", "m2", "m3"])
        self.assertEqual(sorted(e.attachments.get().name for e in Email.objects.all()), ["f.txt"] * 4)


class CommandErrorsTest(TestCase):
    def test_no_tables(self):
        with self.assertRaisesMessage(CommandError, "has none of django-mailer's tables"):
            call_command("import_mailer_queue", stdout=io.StringIO())

    def test_bad_options(self):
        with self.assertRaisesMessage(CommandError, "--batch-size must be at least 1"):
            call_command("import_mailer_queue", "--batch-size", "0")
        with self.assertRaisesMessage(CommandError, "'nowhere' is not in settings.DATABASES"):
            call_command("import_mailer_queue", "--database", "nowhere")


def test_timezone_is_utc() -> None:
    assert timezone.get_current_timezone_name() == "UTC"
