"""The management commands: send_queued_mail and cleanup_mail."""

from __future__ import annotations

import datetime
import os
import re
import tempfile
import uuid
from io import StringIO
from unittest import mock

from django.core import mail as django_mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from post_office import mail
from post_office.delivery import Worker
from post_office.models import STATUS, Attachment, Email, Log, get_attachment_storage
from tests.backends import FileRecordingBackend, ScriptedBackend

LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
BACKENDS = {"default": LOCMEM, "scripted": "tests.backends.ScriptedBackend"}


def queue(subject: str, **kwargs) -> Email:
    kwargs.setdefault("recipients", ["to@example.com"])
    kwargs.setdefault("sender", "from@example.com")
    kwargs.setdefault("message", "body")
    return mail.send(subject=subject, **kwargs)


def send_queued_mail(*args: str) -> str:
    out = StringIO()
    call_command("send_queued_mail", *args, stdout=out)
    return out.getvalue()


class SendQueuedMailTest(TestCase):
    def setUp(self) -> None:
        ScriptedBackend.reset()
        settings = self.settings(POST_OFFICE={"BACKENDS": BACKENDS})
        settings.enable()
        self.addCleanup(settings.disable)

    def test_delivers_everything_due_and_prints_a_summary(self):
        for i in range(3):
            queue(f"due {i}")
        queue("later", scheduled_time=timezone.now() + datetime.timedelta(hours=1))
        output = send_queued_mail()
        self.assertIn("3 sent, 0 failed, 0 requeued, 0 expired", output)
        self.assertEqual(sorted(m.subject for m in django_mail.outbox), ["due 0", "due 1", "due 2"])
        self.assertEqual(Email.objects.filter(status=STATUS.queued).count(), 1)

    def test_max_emails_stops_after_that_many(self):
        for subject, priority in [
            ("low", "low"),
            ("high", "high"),
            ("medium", "medium"),
            ("now", "now"),
            ("low 2", "low"),
        ]:
            queue(subject, priority=priority)
        output = send_queued_mail("--max-emails", "2")
        self.assertIn("2 sent", output)
        self.assertEqual(sorted(m.subject for m in django_mail.outbox), ["high", "now"])
        self.assertEqual(Email.objects.filter(status=STATUS.queued).count(), 3)
        send_queued_mail("--max-emails", "10")
        self.assertEqual(Email.objects.filter(status=STATUS.sent).count(), 5)

    def test_batch_size_limits_each_claim(self):
        for i in range(5):
            queue(f"batched {i}")
        claims: list[tuple[int, int]] = []
        original_claim = Worker.claim

        def recording_claim(worker, limit, ids=None, skip_aliases=()):
            token, emails = original_claim(worker, limit, ids=ids, skip_aliases=skip_aliases)
            claims.append((limit, len(emails)))
            return token, emails

        with mock.patch.object(Worker, "claim", recording_claim):
            output = send_queued_mail("--batch-size", "2")
        self.assertIn("5 sent", output)
        self.assertEqual(claims, [(2, 2), (2, 2), (2, 1), (2, 0)])

    def test_log_level_option(self):
        ScriptedBackend.errors = {"bad": RuntimeError("boom")}
        with self.settings(POST_OFFICE={"BACKENDS": BACKENDS, "LOG_LEVEL": 2, "MAX_RETRIES": 0}):
            for level, expected in (("0", set()), ("1", {STATUS.failed}), ("2", {STATUS.sent, STATUS.failed})):
                Email.objects.all().delete()
                good = queue("good")
                bad = queue("bad", backend="scripted")
                send_queued_mail("--log-level", level)
                self.assertEqual(set(Log.objects.values_list("status", flat=True)), expected, f"--log-level {level}")
                self.assertEqual(Email.objects.get(pk=good.pk).status, STATUS.sent)
                self.assertEqual(Email.objects.get(pk=bad.pk).status, STATUS.failed)

    def test_invalid_options_are_refused(self):
        queue("never sent")
        with self.assertRaisesMessage(CommandError, "--processes must be at least 1"):
            send_queued_mail("--processes", "0")
        with self.assertRaisesMessage(CommandError, "--batch-size must be at least 1"):
            send_queued_mail("--batch-size", "0")
        with self.assertRaisesMessage(CommandError, "--max-emails must be zero or more"):
            send_queued_mail("--max-emails", "-1")
        with self.assertRaises(CommandError):
            send_queued_mail("--log-level", "3")
        self.assertEqual(django_mail.outbox, [])

    def test_verbosity_0_prints_nothing(self):
        queue("quiet")
        self.assertEqual(send_queued_mail("--verbosity", "0"), "")
        self.assertEqual(len(django_mail.outbox), 1)


class SendQueuedMailProcessesTest(TransactionTestCase):
    """``--processes 2`` forks workers; they need committed data, hence TransactionTestCase.

    The workers record to a file: forked children share no memory with the test,
    and a thread in this process (such as an SMTP sink) would make forking unsafe.
    """

    def test_two_processes_deliver_each_email_once(self):
        total = 40
        mail.send_many(
            [
                {
                    "recipients": [f"user{i}@example.com"],
                    "sender": "from@example.com",
                    "subject": f"forked {i}",
                    "message": "body",
                }
                for i in range(total)
            ]
        )
        with tempfile.TemporaryDirectory() as directory:
            FileRecordingBackend.path = os.path.join(directory, "sent.txt")
            self.addCleanup(setattr, FileRecordingBackend, "path", None)
            with self.settings(POST_OFFICE={"BACKENDS": {"default": "tests.backends.FileRecordingBackend"}}):
                output = send_queued_mail("--processes", "2", "--batch-size", "5")
            with open(FileRecordingBackend.path, encoding="utf-8") as handle:
                subjects = handle.read().splitlines()
        self.assertIn(f"{total} sent, 0 failed", output)
        self.assertEqual(sorted(subjects), sorted(f"forked {i}" for i in range(total)))
        self.assertEqual(Email.objects.filter(status=STATUS.sent).count(), total)
        self.assertEqual(Log.objects.count(), total)

    def test_max_emails_is_shared_between_processes(self):
        mail.send_many(
            [
                {"recipients": ["to@example.com"], "sender": "from@example.com", "subject": f"capped {i}"}
                for i in range(10)
            ]
        )
        with tempfile.TemporaryDirectory() as directory:
            FileRecordingBackend.path = os.path.join(directory, "sent.txt")
            self.addCleanup(setattr, FileRecordingBackend, "path", None)
            with self.settings(POST_OFFICE={"BACKENDS": {"default": "tests.backends.FileRecordingBackend"}}):
                output = send_queued_mail("--processes", "2", "--max-emails", "3", "--batch-size", "1")
            with open(FileRecordingBackend.path, encoding="utf-8") as handle:
                subjects = handle.read().splitlines()
        self.assertIn("3 sent", output)
        self.assertEqual(len(subjects), 3)
        self.assertEqual(Email.objects.filter(status=STATUS.sent).count(), 3)
        self.assertEqual(Email.objects.filter(status=STATUS.queued).count(), 7)


class CleanupMailTest(TestCase):
    def make(self, subject: str, status: int, days_old: float, **kwargs) -> Email:
        email = queue(subject, **kwargs)
        created = timezone.now() - datetime.timedelta(days=days_old)
        Email.objects.filter(pk=email.pk).update(status=status, created=created)
        # Every row of its attachments' contents was last used when it was queued (cleanup spares recent ones).
        hashes = list(Attachment.objects.filter(emails=email).values_list("content_hash", flat=True))
        Attachment.objects.filter(content_hash__in=hashes).update(last_used=created)
        return email

    def cleanup(self, *args: str) -> str:
        out = StringIO()
        # Files are deleted once the rows' deletion commits.
        with self.captureOnCommitCallbacks(execute=True):
            call_command("cleanup_mail", *args, stdout=out)
        return out.getvalue()

    def remaining(self) -> set[str]:
        return set(Email.objects.values_list("subject", flat=True))

    def test_deletes_old_sent_and_failed_mail_only(self):
        old_sent = self.make("old sent", STATUS.sent, 40)
        Log.objects.create(email=old_sent, status=STATUS.sent)
        self.make("old failed", STATUS.failed, 40)
        self.make("old queued", STATUS.queued, 40)
        self.make("old requeued", STATUS.requeued, 40)
        self.make("old sending", STATUS.sending, 40)
        self.make("old scheduled", STATUS.queued, 40, scheduled_time=timezone.now() + datetime.timedelta(days=1))
        self.make("recent sent", STATUS.sent, 10)
        self.make("recent failed", STATUS.failed, 10)
        output = self.cleanup("--days", "30")
        self.assertIn("Deleted 2 emails", output)
        self.assertEqual(
            self.remaining(),
            {"old queued", "old requeued", "old sending", "old scheduled", "recent sent", "recent failed"},
        )
        self.assertFalse(Log.objects.exists())  # the deleted email's logs go with it

    def test_days_zero_deletes_all_finished_mail(self):
        self.make("sent", STATUS.sent, 0.01)
        self.make("queued", STATUS.queued, 0.01)
        self.cleanup("--days", "0")
        self.assertEqual(self.remaining(), {"queued"})

    def test_deletes_in_batches(self):
        for i in range(5):
            self.make(f"old {i}", STATUS.sent, 100)
        self.make("kept", STATUS.queued, 100)
        with CaptureQueriesContext(connection) as queries:
            output = self.cleanup("--days", "1", "--batch-size", "2")
        self.assertIn("Deleted 5 emails", output)
        self.assertEqual(self.remaining(), {"kept"})
        email_deletes = [
            q["sql"] for q in queries if re.match(r'\s*DELETE FROM [`"]?post_office_email[`"]?\s+WHERE', q["sql"], re.I)
        ]
        self.assertEqual(len(email_deletes), 3, email_deletes)  # 2 + 2 + 1

    def test_attachments_are_kept_without_the_option(self):
        self.make("old", STATUS.sent, 40, attachments={"a.txt": uuid.uuid4().bytes})
        self.cleanup("--days", "30")
        self.assertEqual(Attachment.objects.count(), 1)
        self.assertTrue(get_attachment_storage().exists(Attachment.objects.get().file.name))

    def test_delete_attachments_only_when_no_email_uses_them(self):
        storage = get_attachment_storage()
        only_old = uuid.uuid4().bytes
        used_by_both = uuid.uuid4().bytes
        shared_file = uuid.uuid4().bytes
        self.make("old", STATUS.sent, 40, attachments={"only.bin": only_old, "both.bin": used_by_both})
        # The same content under another name: another Attachment row, the same file.
        self.make("old 2", STATUS.failed, 40, attachments={"old-name.bin": shared_file})
        self.make("new", STATUS.queued, 2, attachments={"both.bin": used_by_both, "new-name.bin": shared_file})
        rows = {a.name: a for a in Attachment.objects.all()}
        self.assertEqual(set(rows), {"only.bin", "both.bin", "old-name.bin", "new-name.bin"})
        self.assertEqual(rows["old-name.bin"].file.name, rows["new-name.bin"].file.name)

        output = self.cleanup("--days", "30", "--delete-attachments")
        self.assertIn("Deleted 2 emails and 2 attachments", output)
        self.assertEqual(self.remaining(), {"new"})
        self.assertEqual(set(Attachment.objects.values_list("name", flat=True)), {"both.bin", "new-name.bin"})
        self.assertFalse(storage.exists(rows["only.bin"].file.name))
        self.assertTrue(storage.exists(rows["both.bin"].file.name))
        self.assertTrue(storage.exists(rows["new-name.bin"].file.name))
        # What the remaining email attaches is still readable for delivery.
        message = Email.objects.get(subject="new").email_message()
        self.assertEqual(
            sorted(content for _name, content, _type in message.attachments), sorted([used_by_both, shared_file])
        )

    def test_short_delete_attachments_flag(self):
        self.make("old", STATUS.sent, 40, attachments={"x.bin": uuid.uuid4().bytes})
        self.cleanup("-d", "30", "-da")
        self.assertFalse(Attachment.objects.exists())

    def test_invalid_options_are_refused(self):
        with self.assertRaisesMessage(CommandError, "--days must be zero or more"):
            self.cleanup("--days", "-1")
        with self.assertRaisesMessage(CommandError, "--batch-size must be at least 1"):
            self.cleanup("--batch-size", "0")
