"""django-post_office's public surface, part 2: ``mail``, ``utils``, ``signals``, ``tasks`` and the commands.

Each test is written from django-post_office 3.12's documented behaviour
(docs/migrating.rst, "Every name, compared").
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from celery import Celery
from django.core import mail as django_mail
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import connection
from django.test import TestCase, TransactionTestCase
from django.utils import timezone

from post_office import mail, tasks, utils
from post_office.exceptions import InvalidAddress, InvalidPriority
from post_office.models import PRIORITY, STATUS, Attachment, Email, EmailTemplate, Log
from post_office.signals import email_queued
from tests.helpers import LOCMEM, QueueTestMixin

ROOT = Path(__file__).resolve().parent.parent
SENDER = "shop@example.com"


class Received:
    """Records the email_queued signals sent while it is connected."""

    def __init__(self, test: TestCase) -> None:
        self.calls: list[tuple[object, list[Email]]] = []
        email_queued.connect(self.receive, dispatch_uid=f"received-{id(self)}")
        test.addCleanup(email_queued.disconnect, dispatch_uid=f"received-{id(self)}")

    def receive(self, sender: object, emails: list[Email], **kwargs: object) -> None:
        self.calls.append((sender, emails))


class CreateTest(QueueTestMixin, TestCase):
    backends = {"default": LOCMEM}

    def test_create_stores_an_email_without_signalling_or_sending_it(self):
        received = Received(self)
        with self.captureOnCommitCallbacks(execute=True):
            email = mail.create(
                SENDER,
                recipients=["ann@example.com"],
                cc=["cc@example.com"],
                subject="Hi {{ name }}",
                message="Hello {{ name }}",
                context={"name": "Ann"},
                headers={"X-A": "1"},
                priority="now",
                backend="",
            )
        stored = Email.objects.get(pk=email.pk)
        self.assertEqual(
            (stored.to, stored.cc, stored.subject, stored.message),
            (["ann@example.com"], ["cc@example.com"], "Hi Ann", "Hello Ann"),
        )
        self.assertEqual((stored.status, stored.priority, stored.headers), (STATUS.queued, PRIORITY.now, {"X-A": "1"}))
        self.assertEqual(received.calls, [])
        self.assertEqual(django_mail.outbox, [], "not sent at once")
        self.assertEqual(email.dispatch(), STATUS.sent)

    def test_create_without_commit_returns_an_unsaved_email_and_takes_a_template(self):
        template = EmailTemplate.objects.create(name="welcome", subject="Welcome {{ name }}", content="Hi {{ name }}")
        email = mail.create(SENDER, ["ann@example.com"], template=template, context={"name": "Ann"}, commit=False)
        self.assertIsNone(email.pk)
        self.assertEqual((email.subject, email.message, email.template), ("Welcome Ann", "Hi Ann", template))
        later = mail.create(
            SENDER, ["ann@example.com"], template=template, context={"name": "Ann"}, render_on_delivery=True
        )
        self.assertEqual((later.subject, later.context), ("", {"name": "Ann"}))

    def test_create_validates_like_send(self):
        with self.assertRaises(InvalidAddress):
            mail.create(SENDER, ["not an address"], subject="s")
        self.assertFalse(Email.objects.exists())


class QueueTest(QueueTestMixin, TestCase):
    backends = {"default": LOCMEM}

    def test_get_queued_returns_due_emails_by_priority_at_most_a_batch(self):
        now = timezone.now()
        low = self.queue("low", priority="low")
        high = self.queue("high", priority="high")
        self.queue("later", scheduled_time=now + datetime.timedelta(hours=1))
        self.queue("expired", expires_at=now + datetime.timedelta(seconds=1))
        Email.objects.filter(subject="expired").update(expires_at=now - datetime.timedelta(seconds=1))
        Email.objects.filter(pk=self.queue("sent").pk).update(status=STATUS.sent)
        requeued = self.queue("requeued", priority="medium")
        Email.objects.filter(pk=requeued.pk).update(status=STATUS.requeued)
        self.assertEqual(list(mail.get_queued()), [high, requeued, low])
        with self.po(BATCH_SIZE=2):
            self.assertEqual(list(mail.get_queued()), [high, requeued])

    def test_get_queued_prefetches_attachments(self):
        self.queue("one", attachments={"a.txt": ContentFile(b"a")})
        self.queue("two", attachments={"b.txt": ContentFile(b"b")})
        with self.assertNumQueries(2):
            names = sorted(a.name for email in mail.get_queued() for a in email.attachments.all())
        self.assertEqual(names, ["a.txt", "b.txt"])

    def test_attach_templates_loads_the_templates_in_one_query(self):
        EmailTemplate.objects.create(name="one", subject="One")
        EmailTemplate.objects.create(name="two", subject="Two")
        for name in ("one", "two", "one"):
            mail.send("a@example.com", SENDER, template=name)
        mail.send("a@example.com", SENDER, subject="no template")
        emails = list(Email.objects.order_by("pk"))
        with self.assertNumQueries(1):
            mail.attach_templates(emails)
        with self.assertNumQueries(0):
            self.assertEqual([e.template.name if e.template else None for e in emails], ["one", "two", "one", None])

    def test_send_queued_returns_sent_failed_requeued(self):
        for index in range(3):
            self.queue(f"e{index}")
        self.assertEqual(mail.send_queued(processes=1, log_level=2), (3, 0, 0))
        self.assertEqual(Log.objects.filter(status=STATUS.sent).count(), 3)

    def test_send_queued_mail_until_done_empties_the_queue_batch_after_batch(self):
        for index in range(5):
            self.queue(f"e{index}")
        with self.po(BATCH_SIZE=2):
            self.assertIsNone(mail.send_queued_mail_until_done(lockfile="/tmp/ignored", processes=1, log_level=0))
        self.assertEqual(len(django_mail.outbox), 5)
        self.assertFalse(mail.get_queued().exists())
        self.assertFalse(Log.objects.exists(), "log_level 0 logs nothing")

    def test_the_names_mail_imports(self):
        self.assertIs(mail.PRIORITY, PRIORITY)
        self.assertIs(mail.STATUS, STATUS)
        self.assertIs(mail.Email, Email)
        self.assertIs(mail.Log, Log)
        self.assertIs(mail.email_queued, email_queued)
        self.assertEqual(mail.logger.name, "post_office")


class SignalTest(QueueTestMixin, TestCase):
    backends = {"default": LOCMEM}

    def test_email_queued_is_sent_with_the_emails_queued(self):
        received = Received(self)
        with self.captureOnCommitCallbacks(execute=True):
            one = self.queue("one")
        with self.captureOnCommitCallbacks(execute=True):
            many = mail.send_many(
                [{"recipients": ["a@example.com"], "sender": SENDER, "subject": f"m{i}"} for i in range(2)]
            )
        self.assertEqual(received.calls, [(Email, [one]), (Email, many)])


class UtilsTest(QueueTestMixin, TestCase):
    backends = {"default": LOCMEM}

    def test_send_mail_queues_one_email_per_recipient(self):
        emails = utils.send_mail("Hi", "Hello", SENDER, ["a@example.com", "b@example.com"], html_message="<p>Hello</p>")
        self.assertEqual([e.to for e in emails], [["a@example.com"], ["b@example.com"]])
        self.assertEqual({e.status for e in emails}, {STATUS.queued})
        self.assertEqual(emails[0].priority, PRIORITY.medium)
        with self.captureOnCommitCallbacks(execute=True):
            utils.send_mail("Now", "Hello", SENDER, ["c@example.com"], priority=PRIORITY.now)
        self.assertEqual([m.subject for m in django_mail.outbox], ["Now"])

    def test_get_email_template_returns_the_template_or_its_translation(self):
        base = EmailTemplate.objects.create(name="welcome", subject="Hi")
        german = base.translated_templates.create(language="de", subject="Hallo")
        self.assertEqual(utils.get_email_template("welcome"), base)
        self.assertEqual(utils.get_email_template("welcome", "de"), german)
        with self.assertRaises(EmailTemplate.DoesNotExist):
            utils.get_email_template("missing")
        with self.po(LANGUAGE_FALLBACKS=False), self.assertRaises(EmailTemplate.DoesNotExist):
            utils.get_email_template("welcome", "fr")
        with self.assertRaises(EmailTemplate.DoesNotExist):
            mail.send("a@example.com", SENDER, template="missing")

    def test_split_emails_deals_round_robin(self):
        self.assertEqual(utils.split_emails([1, 2, 3, 4, 5], 2), [[1, 3, 5], [2, 4]])
        self.assertEqual(utils.split_emails([1, 2]), [[1, 2]])
        self.assertEqual(utils.split_emails([], 3), [])

    def test_create_attachments_stores_new_rows_for_an_email(self):
        attachments = utils.create_attachments(
            {
                "notes.txt": ContentFile(b"notes"),
                "data.csv": {"file": ContentFile(b"a,b"), "mimetype": "text/csv"},
                "logo.png": {
                    "file": ContentFile(b"\x89PNG"),
                    "mimetype": "image/png",
                    "headers": {"Content-ID": "<logo>"},
                },
            }
        )
        self.assertEqual([a.name for a in attachments], ["notes.txt", "data.csv", "logo.png"])
        self.assertEqual([a.mimetype for a in attachments], ["text/plain", "text/csv", "image/png"])
        self.assertEqual(attachments[2].headers, {"Content-ID": "<logo>"})
        self.assertTrue(all(a.pk for a in attachments))
        self.assertEqual(attachments[0].file.read(), b"notes")
        again = utils.create_attachments({"notes.txt": ContentFile(b"notes")})
        self.assertNotEqual(again[0].pk, attachments[0].pk, "each call makes rows of its own")
        email = self.queue("with attachments")
        email.attachments.add(*attachments)
        mail.send_queued()
        self.assertEqual(
            sorted(a[0] if isinstance(a, tuple) else a.get_filename() for a in django_mail.outbox[0].attachments),
            ["data.csv", "logo.png", "notes.txt"],
        )

    def test_parse_priority(self):
        self.assertEqual(utils.parse_priority("high"), PRIORITY.high)
        self.assertEqual(utils.parse_priority(PRIORITY.low), PRIORITY.low)
        self.assertEqual(utils.parse_priority(None), PRIORITY.medium)
        with self.po(DEFAULT_PRIORITY="now"):
            self.assertEqual(utils.parse_priority(None), PRIORITY.now)
        with self.assertRaises(ValueError) as raised:
            utils.parse_priority("urgent")
        self.assertIsInstance(raised.exception, InvalidPriority)

    def test_parse_emails(self):
        self.assertEqual(utils.parse_emails("a@example.com"), ["a@example.com"])
        self.assertEqual(
            utils.parse_emails(["a@example.com", "Bob <b@example.com>"]), ["a@example.com", "Bob <b@example.com>"]
        )
        self.assertEqual(utils.parse_emails(None), [])
        with self.assertRaises(ValidationError):
            utils.parse_emails(["a@example.com", "nope"])

    def test_cleanup_expired_mails_deletes_old_finished_mail(self):
        old_sent, old_queued, new_sent = self.queue("old sent"), self.queue("old queued"), self.queue("new sent")
        Email.objects.filter(pk__in=[old_sent.pk, new_sent.pk]).update(status=STATUS.sent)
        Email.objects.filter(pk__in=[old_sent.pk, old_queued.pk]).update(
            created=timezone.now() - datetime.timedelta(days=100)
        )
        cutoff = timezone.now() - datetime.timedelta(days=90)
        self.assertEqual(utils.cleanup_expired_mails(cutoff, delete_attachments=True, batch_size=10), (1, 0))
        # Queued mail is kept however old (a difference, docs/migrating.rst).
        self.assertEqual(set(Email.objects.values_list("subject", flat=True)), {"old queued", "new sent"})


class TasksTest(QueueTestMixin, TestCase):
    backends = {"default": LOCMEM}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.app = Celery("post_office_dpo_surface", set_as_current=True)
        cls.app.conf.task_always_eager = True

    def test_send_queued_mail_task_takes_any_arguments(self):
        self.queue("by celery")
        tasks.send_queued_mail.delay("ignored", also="ignored").get()
        self.assertEqual([m.subject for m in django_mail.outbox], ["by celery"])

    def test_cleanup_mail_task_deletes_old_sent_mail(self):
        old = self.queue("old")
        Email.objects.filter(pk=old.pk).update(status=STATUS.sent, created=timezone.now() - datetime.timedelta(days=40))
        self.assertEqual(tasks.cleanup_mail.name, "post_office.tasks.cleanup_mail")
        tasks.cleanup_mail.delay(days=60).get()
        self.assertTrue(Email.objects.filter(pk=old.pk).exists())
        tasks.cleanup_mail.delay(days=30, delete_attachments=False).get()
        self.assertFalse(Email.objects.filter(pk=old.pk).exists())

    def test_queued_mail_handler_starts_the_task_as_the_connected_trigger_does(self):
        with self.po(CELERY_ENABLED=True), self.captureOnCommitCallbacks(execute=True):
            self.queue("triggered")
        self.assertEqual([m.subject for m in django_mail.outbox], ["triggered"])
        self.queue("by the handler")
        with self.po(CELERY_ENABLED=True):
            tasks.queued_mail_handler(sender=Email, emails=[])
        self.assertEqual([m.subject for m in django_mail.outbox], ["triggered", "by the handler"])


class CommandsTest(TransactionTestCase):
    """The commands with every option django-post_office documented, run as cron runs them."""

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "POST_OFFICE_TEST_DB": os.environ.get("POST_OFFICE_TEST_DB", "sqlite"),
            "POST_OFFICE_DB_NAME": str(connection.settings_dict["NAME"]),
        }
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        return result

    def test_send_queued_mail_with_processes_lockfile_and_log_level(self):
        for index in range(3):
            mail.send("a@example.com", SENDER, subject=f"cron {index}", message="m")
        lock = os.path.join(tempfile.gettempdir(), "h2_post_office")
        self.manage("send_queued_mail", "--processes=1", f"--lockfile={lock}", "--log-level=1")
        self.manage("send_queued_mail", "-p", "2", "-L", lock, "-l", "2")
        self.assertEqual(set(Email.objects.values_list("status", flat=True)), {STATUS.sent})
        self.assertFalse(Log.objects.exists(), "log level 1 logs failures only")

    def test_cleanup_mail_with_days_attachments_and_batch_size(self):
        email = mail.send("a@example.com", SENDER, subject="old", attachments={"a.txt": ContentFile(b"a")})
        Email.objects.filter(pk=email.pk).update(
            status=STATUS.sent, created=timezone.now() - datetime.timedelta(days=40)
        )
        Attachment.objects.update(last_used=timezone.now() - datetime.timedelta(days=40))
        output = self.manage("cleanup_mail", "--days=30", "--delete-attachments", "--batch-size=10").stdout
        self.assertIn("Deleted 1 emails and 1 attachments", output)
        self.manage("cleanup_mail", "-d", "30", "-da", "-b", "5")
        self.assertFalse(Attachment.objects.exists())
