"""The enqueue API: mail.send, send_many, helpers, templates and the model-level API."""

from __future__ import annotations

import datetime
import os
import tempfile

from django.conf import settings
from django.core import mail as django_mail
from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, transaction
from django.test import TestCase, TransactionTestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import post_office
import post_office.backends
from post_office import mail, utils
from post_office.exceptions import InvalidAddress, TemplateSyntaxInvalid
from post_office.models import PRIORITY, STATUS, Attachment, Email, EmailTemplate, Log
from post_office.signals import email_queued

from .failing_backend import FailingBackend

FAILING = "tests.failing_backend.FailingBackend"


class ConstantsTest(TestCase):
    def test_status_and_priority_keep_django_post_office_values(self):
        self.assertEqual((STATUS.sent, STATUS.failed, STATUS.queued, STATUS.requeued), (0, 1, 2, 3))
        self.assertEqual((PRIORITY.low, PRIORITY.medium, PRIORITY.high, PRIORITY.now), (0, 1, 2, 3))
        self.assertIs(Email.STATUS, STATUS)
        self.assertIs(Email.PRIORITY, PRIORITY)

    def test_public_api(self):
        self.assertTrue(callable(post_office.mail.send))
        self.assertIs(post_office.send_mail, mail.send_mail)
        self.assertIs(post_office.EmailBackend, post_office.backends.EmailBackend)
        self.assertRegex(post_office.__version__, r"^\d+\.\d+\.\d+$")


class SendTest(TestCase):
    def setUp(self):
        self.template = EmailTemplate.objects.create(
            name="welcome",
            subject="Hello {{ name }} & <friends>",
            content="Dear {{ name }}, 1 < 2 & 'quotes'",
            html_content="<p>Dear {{ name }}</p>",
        )

    def test_template_is_rendered_and_stored(self):
        email = mail.send(
            ["Doe <doe@example.com>"], "from@example.com", template="welcome", context={"name": "Tom & <Jerry>"}
        )
        email.refresh_from_db()
        # Subject and plain text are never HTML-escaped; HTML is.
        self.assertEqual(email.subject, "Hello Tom & <Jerry> & <friends>")
        self.assertEqual(email.message, "Dear Tom & <Jerry>, 1 < 2 & 'quotes'")
        self.assertEqual(email.html_message, "<p>Dear Tom &amp; &lt;Jerry&gt;</p>")
        self.assertEqual(email.template, self.template)
        self.assertIsNone(email.context)
        self.assertEqual(email.to, ["Doe <doe@example.com>"])
        self.assertEqual(email.status, STATUS.queued)
        self.assertEqual(email.priority, PRIORITY.medium)

    def test_template_instance_accepted(self):
        email = mail.send("a@example.com", template=self.template, context={"name": "X"})
        self.assertEqual(email.subject, "Hello X & <friends>")
        self.assertEqual(email.from_email, "webmaster@example.com")

    def test_literal_text_without_context(self):
        email = mail.send(["a@example.com"], subject="{{ not_a_var }}", message="{% if %} <b>", html_message="{{ x }}")
        email.refresh_from_db()
        self.assertEqual(email.subject, "{{ not_a_var }}")
        self.assertEqual(email.message, "{% if %} <b>")
        self.assertEqual(email.html_message, "{{ x }}")

    def test_context_renders_subject_message_and_html(self):
        email = mail.send(
            ["a@example.com"],
            subject="Hi {{ name }}",
            message="Text {{ name }}",
            html_message="<i>{{ name }}</i>",
            context={"name": "A&B"},
        )
        self.assertEqual((email.subject, email.message, email.html_message), ("Hi A&B", "Text A&B", "<i>A&amp;B</i>"))

    def test_all_fields_stored(self):
        when = timezone.now() + datetime.timedelta(hours=1)
        expires = when + datetime.timedelta(days=1)
        email = mail.send(
            ['"Doe, John" <john@example.com>'],
            '"Shop, Inc" <shop@example.com>',
            subject="S",
            message="M",
            cc=["cc@example.com"],
            bcc="bcc@example.com",
            headers={"Reply-To": "reply@example.com", "X-Tag": "t"},
            priority="high",
            scheduled_time=when,
            expires_at=expires,
            language="de",
        )
        email = Email.objects.get(pk=email.pk)
        self.assertEqual(email.to, ['"Doe, John" <john@example.com>'])
        self.assertEqual(email.from_email, '"Shop, Inc" <shop@example.com>')
        self.assertEqual(email.cc, ["cc@example.com"])
        self.assertEqual(email.bcc, ["bcc@example.com"])
        self.assertEqual(email.headers, {"Reply-To": "reply@example.com", "X-Tag": "t"})
        self.assertEqual(email.priority, PRIORITY.high)
        self.assertEqual(email.scheduled_time, when)
        self.assertEqual(email.expires_at, expires)
        self.assertEqual(email.language, "de")

    def test_priority_numbers_and_members(self):
        self.assertEqual(mail.send("a@example.com", message="m", priority=0).priority, PRIORITY.low)
        self.assertEqual(mail.send("a@example.com", message="m", priority=PRIORITY.high).priority, PRIORITY.high)

    @override_settings(POST_OFFICE={"DEFAULT_PRIORITY": "low"})
    def test_default_priority_setting(self):
        self.assertEqual(mail.send("a@example.com", message="m").priority, PRIORITY.low)

    def test_date_schedule_is_midnight(self):
        email = mail.send("a@example.com", message="m", scheduled_time=datetime.date(2030, 1, 2))
        self.assertEqual(email.scheduled_time, timezone.make_aware(datetime.datetime(2030, 1, 2)))

    def test_render_on_delivery_stores_context_and_renders_later(self):
        email = mail.send("a@example.com", template="welcome", context={"name": "Later"}, render_on_delivery=True)
        email.refresh_from_db()
        self.assertEqual((email.subject, email.message, email.html_message), ("", "", ""))
        self.assertEqual(email.context, {"name": "Later"})
        message = email.email_message()
        self.assertEqual(message.subject, "Hello Later & <friends>")
        self.assertEqual(message.body, "Dear Later, 1 < 2 & 'quotes'")

    def test_language_picks_translation(self):
        EmailTemplate.objects.create(
            name="ignored", default_template=self.template, language="de", subject="Hallo {{ name }}"
        )
        email = mail.send("a@example.com", template="welcome", context={"name": "Uwe"}, language="de")
        self.assertEqual(email.subject, "Hallo Uwe")
        self.assertEqual(email.template.language, "de")

    def test_deleting_template_keeps_history(self):
        email = mail.send("a@example.com", template="welcome", context={"name": "X"})
        self.template.delete()
        email.refresh_from_db()
        self.assertIsNone(email.template)
        self.assertEqual(email.subject, "Hello X & <friends>")

    def test_commit_false_returns_unsaved_email(self):
        email = mail.send("a@example.com", message="m", commit=False)
        self.assertIsNone(email.pk)
        self.assertFalse(Email.objects.exists())

    def test_email_message_is_the_django_message(self):
        email = mail.send(
            ["a@example.com"],
            subject="S",
            message="text",
            html_message="<b>html</b>",
            headers={"Reply-to": "r@example.com"},
        )
        message = email.email_message()
        self.assertEqual(message.subject, "S")
        self.assertEqual(message.body, "text")
        self.assertEqual(message.alternatives[0][0], "<b>html</b>")
        self.assertEqual(message.to, ["a@example.com"])
        self.assertEqual(message.message()["Reply-To"], "r@example.com")

    def test_html_only_email_is_single_html_part(self):
        email = mail.send(["a@example.com"], subject="S", html_message="<b>only</b>")
        message = email.email_message()
        self.assertEqual(message.content_subtype, "html")
        self.assertEqual(message.body, "<b>only</b>")

    @override_settings(POST_OFFICE={"MESSAGE_ID_ENABLED": True, "MESSAGE_ID_FQDN": "mail.example.com"})
    def test_message_id_generated_and_kept(self):
        email = mail.send("a@example.com", message="m")
        self.assertRegex(email.message_id, r"^<.+@mail\.example\.com>$")
        self.assertEqual(email.email_message().message()["Message-ID"], email.message_id)

    def test_message_id_from_headers(self):
        email = mail.send("a@example.com", message="m", headers={"Message-ID": "<abc@example.com>"})
        self.assertEqual(email.message_id, "<abc@example.com>")

    def test_email_queued_signal_after_commit(self):
        received = []

        def receiver(sender, emails, **kwargs):
            received.extend(emails)

        email_queued.connect(receiver)
        self.addCleanup(email_queued.disconnect, receiver)
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            email = mail.send("a@example.com", message="m")
        self.assertEqual(received, [])  # not before commit
        for callback in callbacks:
            callback()
        self.assertEqual(received, [email])

    def test_priority_now_delivers_on_commit(self):
        with self.captureOnCommitCallbacks(execute=True):
            email = mail.send("a@example.com", subject="urgent", message="m", priority="now")
        self.assertEqual(email.status, STATUS.sent)
        self.assertEqual(Email.objects.get().status, STATUS.sent)
        self.assertEqual([m.subject for m in django_mail.outbox], ["urgent"])
        self.assertEqual(Log.objects.get().status, STATUS.sent)

    @override_settings(POST_OFFICE={"BACKENDS": {"default": FAILING}})
    def test_priority_now_failure_stays_queued(self):
        FailingBackend.error = ConnectionRefusedError("connection refused")
        with self.captureOnCommitCallbacks(execute=True):
            email = mail.send("a@example.com", subject="urgent", message="m", priority="now")
        stored = Email.objects.get()
        self.assertEqual(stored.status, STATUS.requeued)
        self.assertEqual(email.status, STATUS.requeued)
        self.assertEqual(stored.number_of_retries, 1)
        log = Log.objects.get()
        self.assertEqual((log.status, log.exception_type), (STATUS.failed, "ConnectionRefusedError"))

    def test_dispatch(self):
        email = mail.send("a@example.com", subject="dispatched", message="m")
        self.assertEqual(email.dispatch(), STATUS.sent)
        email.refresh_from_db()
        self.assertEqual(email.status, STATUS.sent)
        self.assertEqual(django_mail.outbox[0].subject, "dispatched")


class AttachmentTest(TestCase):
    def test_forms_of_attachments(self):
        with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as handle:
            handle.write(b"from a path")
        self.addCleanup(os.unlink, handle.name)
        # Paths are read only from the directories the project allows.
        allowed = {**settings.POST_OFFICE, "ATTACHMENT_DIRS": [os.path.dirname(os.path.realpath(handle.name))]}
        with self.settings(POST_OFFICE=allowed):
            email = mail.send(
                "a@example.com",
                message="m",
                attachments={
                    "path.txt": handle.name,
                    "content.bin": ContentFile(b"\x00\x01binary"),
                    "custom.ics": {"file": ContentFile(b"BEGIN:VCALENDAR"), "mimetype": "text/calendar"},
                    "logo.png": {
                        "file": ContentFile(b"PNG"),
                        "mimetype": "image/png",
                        "headers": {"Content-ID": "<logo>"},
                    },
                },
            )
        by_name = {a.name: a for a in email.attachments.all()}
        self.assertEqual(set(by_name), {"path.txt", "content.bin", "custom.ics", "logo.png"})
        self.assertEqual(by_name["path.txt"].file.read(), b"from a path")
        self.assertEqual(by_name["custom.ics"].mimetype, "text/calendar")
        self.assertEqual(by_name["logo.png"].headers, {"Content-ID": "<logo>"})
        message = email.email_message().message()
        parts = {part.get_filename(): part for part in message.walk() if part.get_filename()}
        self.assertEqual(parts["content.bin"].get_payload(decode=True), b"\x00\x01binary")
        self.assertEqual(parts["logo.png"]["Content-ID"], "<logo>")

    def test_identical_content_stored_once_and_shared(self):
        emails = mail.send_many(
            [
                {
                    "recipients": [f"u{i}@example.com"],
                    "message": "m",
                    "attachments": {"terms.pdf": ContentFile(b"%PDF same")},
                }
                for i in range(3)
            ]
        )
        self.assertEqual(Attachment.objects.count(), 1)
        attachment = Attachment.objects.get()
        self.assertEqual(attachment.emails.count(), 3)
        # A later email with the same content reuses the same row and file.
        later = mail.send("x@example.com", message="m", attachments={"terms.pdf": ContentFile(b"%PDF same")})
        self.assertEqual(list(later.attachments.all()), [attachment])
        # Same content under another name: a new row, but the same stored file.
        renamed = mail.send("y@example.com", message="m", attachments={"other.pdf": ContentFile(b"%PDF same")})
        self.assertEqual(Attachment.objects.count(), 2)
        self.assertEqual(renamed.attachments.get().file.name, attachment.file.name)
        self.assertEqual(len(emails), 3)


class SendManyTest(TestCase):
    def setUp(self):
        EmailTemplate.objects.create(name="bulk", subject="Hi {{ n }}", content="Body {{ n }}")

    def kwargs(self, count, with_attachments=True):
        return [
            {
                "recipients": [f"user{i}@example.com"],
                "template": "bulk",
                "context": {"n": i},
                "priority": "high" if i % 2 else "low",
                "attachments": {"a.txt": ContentFile(f"attachment {i % 3}".encode())} if with_attachments else None,
            }
            for i in range(count)
        ]

    def count_queries(self, kwargs_list):
        # Each call as the first of its transaction, as a request's would be: on PostgreSQL
        # only the first call in a transaction sends the NOTIFY (see NotifyOncePerTransactionTest).
        with transaction.atomic():
            with CaptureQueriesContext(connection) as queries:
                mail.send_many(kwargs_list)
            transaction.set_rollback(True)
        return len(queries)

    def test_query_count_is_constant_per_call(self):
        few = self.count_queries(self.kwargs(5))
        Email.objects.all().delete()
        Attachment.objects.all().delete()
        # 30 emails stay under SQLite's 999-parameter limit, where Django itself
        # would split the one bulk INSERT into several.
        many = self.count_queries(self.kwargs(30))
        self.assertEqual(few, many)
        # Pin the figure: template lookup, do-not-send lookup, savepoint, email insert (PostgreSQL:
        # the ids, then a COPY), attachment lookup, attachment insert, link insert, (PostgreSQL:
        # NOTIFY for idle workers), savepoint release.
        self.assertEqual(self.count_queries(self.kwargs(20)), 10 if connection.vendor == "postgresql" else 8)

    def test_rendered_and_stored(self):
        emails = mail.send_many(self.kwargs(5, with_attachments=False))
        self.assertEqual([e.subject for e in emails], [f"Hi {i}" for i in range(5)])
        self.assertTrue(all(e.pk for e in emails))
        self.assertEqual(Email.objects.count(), 5)
        self.assertEqual(Email.objects.filter(priority=PRIORITY.high).count(), 2)

    def test_one_bad_item_stores_nothing(self):
        items = self.kwargs(4)
        items[2]["recipients"] = ["not-an-address"]
        with self.assertRaises(InvalidAddress) as raised:
            mail.send_many(items)
        self.assertIn("kwargs_list[2].recipients", str(raised.exception))
        self.assertFalse(Email.objects.exists())
        self.assertFalse(Attachment.objects.exists())

    def test_empty_list(self):
        self.assertEqual(mail.send_many([]), [])


class HelpersTest(TestCase):
    def test_send_mail_honours_priority(self):
        self.assertEqual(
            mail.send_mail("S", "M", "f@example.com", ["a@example.com", "b@example.com"], priority="high"), 1
        )
        email = Email.objects.get()
        self.assertEqual(
            (email.priority, email.to, email.subject), (PRIORITY.high, ["a@example.com", "b@example.com"], "S")
        )

    def test_send_mail_default_sender(self):
        mail.send_mail("S", "M", None, ["a@example.com"], html_message="<b>M</b>")
        email = Email.objects.get()
        self.assertEqual((email.from_email, email.html_message), ("webmaster@example.com", "<b>M</b>"))

    def test_send_html_mail(self):
        mail.send_html_mail("S", "plain", "<p>html</p>", "f@example.com", ["a@example.com"], priority="low")
        email = Email.objects.get()
        self.assertEqual((email.message, email.html_message, email.priority), ("plain", "<p>html</p>", PRIORITY.low))

    def test_send_mass_mail(self):
        count = mail.send_mass_mail(
            [("S1", "M1", "f@example.com", ["a@example.com"]), ("S2", "M2", None, ["b@example.com"])], priority="high"
        )
        self.assertEqual(count, 2)
        self.assertEqual(sorted(Email.objects.values_list("subject", flat=True)), ["S1", "S2"])
        self.assertEqual(set(Email.objects.values_list("priority", flat=True)), {PRIORITY.high})

    @override_settings(EMAIL_SUBJECT_PREFIX="[site] ")
    def test_mail_admins_and_managers(self):
        mail.mail_admins("Broken", "trace", priority="high")
        mail.mail_managers("Report", "numbers", html_message="<b>numbers</b>")
        admins = Email.objects.get(subject="[site] Broken")
        self.assertEqual(admins.to, ["admin1@example.com", "admin2@example.com"])
        self.assertEqual((admins.from_email, admins.priority), ("server@example.com", PRIORITY.high))
        managers = Email.objects.get(subject="[site] Report")
        self.assertEqual((managers.to, managers.html_message), (["manager@example.com"], "<b>numbers</b>"))

    @override_settings(ADMINS=[])
    def test_mail_admins_without_admins_queues_nothing(self):
        self.assertEqual(mail.mail_admins("S", "M"), 0)
        self.assertFalse(Email.objects.exists())

    def test_utils_send_mail_is_one_email_per_recipient(self):
        emails = utils.send_mail("S", "M", "f@example.com", ["a@example.com", "b@example.com"], priority="low")
        self.assertEqual([e.to for e in emails], [["a@example.com"], ["b@example.com"]])
        self.assertEqual(utils.get_email_template.__name__, "get_email_template")


class TemplateModelTest(TestCase):
    def test_syntax_checked_on_save_with_line(self):
        with self.assertRaises(TemplateSyntaxInvalid) as raised:
            EmailTemplate.objects.create(name="bad", content="line one\n{% if %}\n")
        self.assertIn("content", raised.exception.errors)
        self.assertIn("line 2", raised.exception.errors["content"])
        self.assertFalse(EmailTemplate.objects.exists())

    def test_syntax_checked_on_bulk_paths(self):
        with self.assertRaises(TemplateSyntaxInvalid):
            EmailTemplate.objects.bulk_create([EmailTemplate(name="x", subject="{% bogus %}")])
        template = EmailTemplate.objects.create(name="ok")
        with self.assertRaises(TemplateSyntaxInvalid):
            EmailTemplate.objects.filter(pk=template.pk).update(html_content="{{ x|nofilter }}")
        template.content = "{% endif %}"
        with self.assertRaises(TemplateSyntaxInvalid):
            EmailTemplate.objects.bulk_update([template], ["content"])

    def test_translation_takes_base_name_and_follows_renames(self):
        base = EmailTemplate.objects.create(name="base")
        translation = EmailTemplate.objects.create(name="whatever", default_template=base, language="de")
        self.assertEqual(translation.name, "base")
        base.name = "renamed"
        base.save()
        translation.refresh_from_db()
        self.assertEqual(translation.name, "renamed")


class TemplateConstraintTest(TransactionTestCase):
    def test_only_one_base_template_per_name(self):
        EmailTemplate.objects.create(name="unique")
        with self.assertRaises(IntegrityError), transaction.atomic():
            EmailTemplate.objects.create(name="unique")

    def test_one_translation_per_language(self):
        base = EmailTemplate.objects.create(name="t")
        EmailTemplate.objects.create(name="t", default_template=base, language="de")
        with self.assertRaises(IntegrityError), transaction.atomic():
            EmailTemplate.objects.create(name="t", default_template=base, language="de")

    def test_base_template_has_no_language(self):
        with self.assertRaises(IntegrityError), transaction.atomic():
            EmailTemplate.objects.create(name="t", language="de")


class TransactionTest(TransactionTestCase):
    def test_rollback_leaves_no_email(self):
        class Boom(Exception):
            pass

        with self.assertRaises(Boom), transaction.atomic():
            mail.send("a@example.com", message="m", attachments={"a.txt": ContentFile(b"x")})
            mail.send_many([{"recipients": ["b@example.com"], "message": "m"}] * 3)
            raise Boom
        self.assertFalse(Email.objects.exists())
        self.assertFalse(Attachment.objects.exists())

    def test_priority_now_waits_for_commit(self):
        with transaction.atomic():
            mail.send("a@example.com", subject="now", message="m", priority="now")
            self.assertEqual(django_mail.outbox, [])
        self.assertEqual([m.subject for m in django_mail.outbox], ["now"])
        self.assertEqual(Email.objects.get().status, STATUS.sent)

    def test_priority_now_rolled_back_is_never_sent(self):
        with self.assertRaises(RuntimeError), transaction.atomic():
            mail.send("a@example.com", subject="now", message="m", priority="now")
            raise RuntimeError
        self.assertEqual(django_mail.outbox, [])
        self.assertFalse(Email.objects.exists())


class DeliveryEntryPointsTest(TestCase):
    def test_get_queued_and_send_queued(self):
        later = timezone.now() + datetime.timedelta(days=1)
        due = mail.send("a@example.com", subject="due", message="m")
        mail.send("a@example.com", subject="later", message="m", scheduled_time=later)
        self.assertEqual(list(mail.get_queued()), [due])
        self.assertEqual(mail.send_queued(), (1, 0, 0))
        self.assertEqual([m.subject for m in django_mail.outbox], ["due"])


class NotifyOncePerTransactionTest(TransactionTestCase):
    """PostgreSQL: one NOTIFY wakes the workers for a whole transaction, and a rolled-back part sends it again."""

    def setUp(self) -> None:
        if connection.vendor != "postgresql":
            self.skipTest("LISTEN/NOTIFY is PostgreSQL's")

    def notifies(self, run) -> int:  # type: ignore[no-untyped-def]
        with CaptureQueriesContext(connection) as queries:
            run()
        return sum("pg_notify" in query["sql"] for query in queries.captured_queries)

    def queue(self, subject: str) -> Email:
        return mail.send(["to@example.com"], "from@example.com", subject=subject, message="body")

    def test_one_notify_per_transaction(self):
        def three_in_one() -> None:
            with transaction.atomic():
                for n in range(3):
                    self.queue(f"in one {n}")
                mail.send_many([{"recipients": ["to@example.com"], "sender": "from@example.com", "subject": "many"}])

        self.assertEqual(self.notifies(three_in_one), 1)
        # In autocommit each email is its own transaction, with its own NOTIFY.
        self.assertEqual(self.notifies(lambda: [self.queue(f"alone {n}") for n in range(2)]), 2)
        # The next transaction notifies again: the marker went with the last one.
        self.assertEqual(self.notifies(three_in_one), 1)

    def test_a_rolled_back_savepoint_takes_its_notify_with_it(self):
        def rolled_back_then_queued() -> None:
            with transaction.atomic():
                try:
                    with transaction.atomic():
                        self.queue("rolled back")
                        raise RuntimeError("undo")
                except RuntimeError:
                    pass
                self.queue("kept")
                self.queue("kept too")

        # The first NOTIFY was dropped with the savepoint; the second is the one delivered at commit.
        self.assertEqual(self.notifies(rolled_back_then_queued), 2)
        self.assertEqual(list(Email.objects.values_list("subject", flat=True).order_by("id")), ["kept", "kept too"])

    def test_a_rolled_back_transaction_leaves_no_marker(self):
        with self.assertRaises(RuntimeError), transaction.atomic():
            self.queue("gone")
            raise RuntimeError("undo")
        self.assertEqual(connection.run_on_commit, [])
        self.assertEqual(self.notifies(lambda: self.queue("next")), 1)
