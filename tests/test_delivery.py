"""One-shot delivery: order, schedule, expiry, aliases, results, retries, claims, query cost, concurrency."""

from __future__ import annotations

import datetime
import os
import re
import smtplib
import subprocess
import sys
from collections import Counter
from pathlib import Path
from unittest import mock

from django.core import mail as django_mail
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connection
from django.db.models import Count
from django.test import TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from post_office import mail
from post_office.delivery import Outcome, Worker, expiry
from post_office.delivery.threads import Pace, deal
from post_office.models import STATUS, Email, EmailTemplate, Log
from tests.backends import RecordingBackend, ScriptedBackend
from tests.helpers import QueueTestMixin
from tests.smtp_sink import SMTPSink

ROOT = Path(__file__).resolve().parent.parent
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
BACKENDS = {
    "default": LOCMEM,
    "recording": "tests.backends.RecordingBackend",
    "scripted": "tests.backends.ScriptedBackend",
}


def transient() -> Exception:
    return smtplib.SMTPServerDisconnected("connection unexpectedly closed")


class DeliveryTestCase(QueueTestMixin, TestCase):
    """Delivers to locmem ('default'), RecordingBackend and ScriptedBackend aliases."""

    backends = BACKENDS

    def setUp(self) -> None:
        RecordingBackend.reset()
        ScriptedBackend.reset()
        super().setUp()

    def run_worker(self, **kwargs):
        # One thread: the backend sees emails in the order the worker claimed them.
        kwargs.setdefault("threads", 1)
        return Worker(**kwargs).run()

    def outbox_subjects(self) -> list[str]:
        return [message.subject for message in django_mail.outbox]

    def status_of(self, email: Email) -> int:
        return Email.objects.values_list("status", flat=True).get(pk=email.pk)


class OrderAndScheduleTest(DeliveryTestCase):
    def test_priority_order_then_first_in_first_out(self):
        # Outside captureOnCommitCallbacks 'now' is not delivered at enqueue, so it waits in the queue.
        for subject, priority in [
            ("low 1", "low"),
            ("medium 1", "medium"),
            ("high 1", "high"),
            ("now 1", "now"),
            ("low 2", "low"),
            ("high 2", "high"),
            ("medium 2", "medium"),
            ("now 2", "now"),
            ("high 3", "high"),
        ]:
            self.queue(subject, priority=priority, backend="recording")
        # Batches of two: the order must hold across claims as well as within one.
        stats = self.run_worker(batch_size=2)
        self.assertEqual(stats.sent, 9)
        self.assertEqual(
            [m.subject for m in RecordingBackend.sent],
            ["now 1", "now 2", "high 1", "high 2", "high 3", "medium 1", "medium 2", "low 1", "low 2"],
        )

    def test_scheduled_email_is_sent_only_once_due(self):
        now = timezone.now()
        later = self.queue("later", scheduled_time=now + datetime.timedelta(hours=1))
        due = self.queue("due", scheduled_time=now - datetime.timedelta(minutes=1))
        plain = self.queue("plain")
        stats = self.run_worker()
        self.assertEqual(stats.sent, 2)
        self.assertEqual(sorted(self.outbox_subjects()), ["due", "plain"])
        self.assertEqual(self.status_of(later), STATUS.queued)
        self.assertEqual(self.status_of(due), STATUS.sent)
        self.assertEqual(self.status_of(plain), STATUS.sent)

        # Still not due: a second run leaves it alone.
        self.assertEqual(self.run_worker().attempted, 0)
        Email.objects.filter(pk=later.pk).update(scheduled_time=timezone.now() - datetime.timedelta(seconds=1))
        self.assertEqual(self.run_worker().sent, 1)
        self.assertEqual(self.outbox_subjects()[-1], "later")
        self.assertEqual(self.status_of(later), STATUS.sent)

    def test_expired_email_is_never_sent_and_fails_with_a_log(self):
        now = timezone.now()
        expired = self.queue("expired", expires_at=now - datetime.timedelta(minutes=1))
        scheduled_expired = self.queue(
            "scheduled then expired",
            scheduled_time=now - datetime.timedelta(hours=2),
            expires_at=now - datetime.timedelta(hours=1),
        )
        fresh = self.queue("fresh", expires_at=now + datetime.timedelta(hours=1))
        stats = self.run_worker()
        self.assertEqual((stats.sent, stats.expired), (1, 2))
        self.assertEqual(self.outbox_subjects(), ["fresh"])
        for email in (expired, scheduled_expired):
            self.assertEqual(self.status_of(email), STATUS.failed)
            log = Log.objects.get(email=email)
            self.assertEqual((log.status, log.exception_type), (STATUS.failed, "Expired"))
        self.assertEqual(self.status_of(fresh), STATUS.sent)
        # A later run does not touch them again.
        self.assertEqual(self.run_worker().expired, 0)
        self.assertEqual(Log.objects.filter(email__in=[expired, scheduled_expired]).count(), 2)

    def test_email_expired_by_another_worker_meanwhile_gets_one_log(self):
        email = self.queue("expired", expires_at=timezone.now() - datetime.timedelta(minutes=1))
        # This worker reads the expired ids; before it updates them, another worker expires them.
        stale_reads = [[email.pk]]
        real_expired_ids = expiry.expired_ids

        def expired_ids(now, limit):
            if stale_reads:
                stale = stale_reads.pop()
                Worker().fail_expired()  # the other worker
                return stale
            return real_expired_ids(now, limit)

        worker = Worker()
        with mock.patch.object(expiry, "expired_ids", expired_ids):
            worker.fail_expired()
        self.assertEqual(worker.stats.expired, 0)
        self.assertEqual(Log.objects.filter(email=email).count(), 1)
        stored = Email.objects.get(pk=email.pk)
        self.assertEqual((stored.status, stored.claimed_by), (STATUS.failed, ""))


class BackendAliasTest(DeliveryTestCase):
    def test_each_email_goes_through_its_alias(self):
        default = self.queue("via default")
        recorded = [self.queue(f"via recording {i}", backend="recording") for i in range(3)]
        self.assertEqual(recorded[0].backend_alias, "recording")
        stats = self.run_worker()
        self.assertEqual(stats.sent, 4)
        self.assertEqual(self.outbox_subjects(), ["via default"])
        self.assertEqual([m.subject for m in RecordingBackend.sent], [f"via recording {i}" for i in range(3)])
        # One connection per alias per thread, reused for the whole run.
        self.assertEqual(RecordingBackend.opened, 1)
        self.assertEqual(
            set(Email.objects.filter(pk__in=[default.pk, *[e.pk for e in recorded]]).values_list("status", flat=True)),
            {STATUS.sent},
        )

    def test_delivery_over_smtp_keeps_the_message_id(self):
        from tests.helpers import delivering_to

        with SMTPSink() as sink, delivering_to(sink):
            email = self.queue("over smtp", headers={"Message-ID": "<smtp-1@example.com>", "X-Tag": "t1"})
            self.assertEqual(Worker().run().sent, 1)
        self.assertEqual(len(sink.messages), 1)
        received = sink.messages[0].message
        self.assertEqual(received["Message-ID"], "<smtp-1@example.com>")
        self.assertEqual(received["X-Tag"], "t1")
        self.assertEqual(received["Subject"], "over smtp")
        self.assertEqual(sink.messages[0].rcpt_tos, ["to@example.com"])
        self.assertEqual(self.status_of(email), STATUS.sent)


class ResultsAndLogsTest(DeliveryTestCase):
    def _run_mixed(self, **po_settings):
        """Queue one good, one failing and one expired email; deliver; return them."""
        ScriptedBackend.errors = {"bad": RuntimeError("backend exploded")}
        with self.po(MAX_RETRIES=0, **po_settings):
            good = self.queue("good")
            bad = self.queue("bad", backend="scripted")
            expired = self.queue("expired", expires_at=timezone.now() - datetime.timedelta(seconds=1))
            stats = self.run_worker()
        self.assertEqual((stats.sent, stats.failed, stats.expired), (1, 1, 1))
        self.assertEqual(self.status_of(good), STATUS.sent)
        self.assertEqual(self.status_of(bad), STATUS.failed)
        self.assertEqual(self.status_of(expired), STATUS.failed)
        return good, bad, expired

    def test_log_level_0_logs_nothing(self):
        self._run_mixed(LOG_LEVEL=0)
        self.assertFalse(Log.objects.exists())

    def test_log_level_1_logs_failures_only(self):
        good, bad, expired = self._run_mixed(LOG_LEVEL=1)
        self.assertFalse(Log.objects.filter(email=good).exists())
        log = Log.objects.get(email=bad)
        self.assertEqual(
            (log.status, log.exception_type, log.message), (STATUS.failed, "RuntimeError", "backend exploded")
        )
        self.assertEqual(Log.objects.get(email=expired).exception_type, "Expired")

    def test_log_level_2_logs_every_attempt(self):
        good, bad, expired = self._run_mixed(LOG_LEVEL=2)
        log = Log.objects.get(email=good)
        self.assertEqual((log.status, log.exception_type, log.message), (STATUS.sent, "", ""))
        self.assertEqual(Log.objects.get(email=bad).exception_type, "RuntimeError")
        self.assertEqual(Log.objects.get(email=expired).exception_type, "Expired")
        self.assertEqual(Log.objects.count(), 3)

    def test_worker_log_level_overrides_the_setting(self):
        with self.po(LOG_LEVEL=2):
            self.queue("quiet")
            Worker(log_level=0).run()
        self.assertFalse(Log.objects.exists())

    def test_sent_email_releases_its_claim(self):
        email = self.queue("claim released")
        self.run_worker()
        email.refresh_from_db()
        self.assertEqual((email.status, email.claimed_by, email.lease_expires_at), (STATUS.sent, "", None))


class MessageIdTest(DeliveryTestCase):
    def test_caller_message_id_is_stored_and_sent(self):
        email = self.queue("with id", headers={"Message-ID": "<caller-42@example.com>"})
        self.assertEqual(email.message_id, "<caller-42@example.com>")
        self.run_worker()
        self.assertEqual(django_mail.outbox[0].message()["Message-ID"], "<caller-42@example.com>")

    def test_message_id_enabled_generates_one_and_keeps_it_across_retries(self):
        with self.po(MESSAGE_ID_ENABLED=True, MESSAGE_ID_FQDN="mail.example.org", MAX_RETRIES=1, RETRY_INTERVAL=0):
            email = self.queue("generated id", backend="scripted")
            self.assertRegex(email.message_id, r"^<.+@mail\.example\.org>$")
            self.assertEqual(Email.objects.get(pk=email.pk).message_id, email.message_id)
            # The first attempt fails, the retry (same run, RETRY_INTERVAL 0) succeeds.
            ScriptedBackend.errors = {"generated id": transient()}
            original_send = ScriptedBackend.send_messages

            def fail_once(backend, messages):
                try:
                    return original_send(backend, messages)
                finally:
                    ScriptedBackend.errors = {}

            with mock.patch.object(ScriptedBackend, "send_messages", fail_once):
                stats = self.run_worker()
        self.assertEqual((stats.requeued, stats.sent), (1, 1))
        self.assertEqual(ScriptedBackend.attempts, ["generated id", "generated id"])
        self.assertEqual(ScriptedBackend.sent[0].message()["Message-ID"], email.message_id)
        self.assertEqual(self.status_of(email), STATUS.sent)

    def test_without_setting_or_header_no_id_is_stored(self):
        email = self.queue("no id")
        self.assertIsNone(email.message_id)
        self.run_worker()
        self.assertTrue(django_mail.outbox[0].message()["Message-ID"])


class RetryTest(DeliveryTestCase):
    def make_due(self, email: Email) -> None:
        Email.objects.filter(pk=email.pk).update(scheduled_time=timezone.now() - datetime.timedelta(seconds=1))

    def test_transient_failure_is_requeued_until_max_retries(self):
        ScriptedBackend.error_for_all = transient()
        with self.po(MAX_RETRIES=2, RETRY_INTERVAL=datetime.timedelta(minutes=10)):
            email = self.queue("flaky", backend="scripted")
            before = timezone.now()
            stats = self.run_worker()
            self.assertEqual(stats.requeued, 1)
            email.refresh_from_db()
            self.assertEqual((email.status, email.number_of_retries), (STATUS.requeued, 1))
            # The first retry waits RETRY_INTERVAL, jittered down to no less than half of it.
            self.assertGreaterEqual(email.scheduled_time, before + datetime.timedelta(minutes=5))
            self.assertLessEqual(email.scheduled_time, timezone.now() + datetime.timedelta(minutes=10))
            self.assertEqual((email.claimed_by, email.lease_expires_at), ("", None))

            # Not due before RETRY_INTERVAL has passed.
            self.assertEqual(self.run_worker().attempted, 0)
            self.assertEqual(len(ScriptedBackend.attempts), 1)

            self.make_due(email)
            self.assertEqual(self.run_worker().requeued, 1)
            email.refresh_from_db()
            self.assertEqual((email.status, email.number_of_retries), (STATUS.requeued, 2))

            # MAX_RETRIES requeues used up: the next failure is final.
            self.make_due(email)
            self.assertEqual(self.run_worker().failed, 1)
            email.refresh_from_db()
            self.assertEqual((email.status, email.number_of_retries), (STATUS.failed, 2))
        self.assertEqual(len(ScriptedBackend.attempts), 3)
        self.assertEqual(
            list(Log.objects.filter(email=email).values_list("status", "exception_type")),
            [(STATUS.failed, "SMTPServerDisconnected")] * 3,
        )

    def test_max_retries_0_fails_at_once(self):
        ScriptedBackend.error_for_all = transient()
        with self.po(MAX_RETRIES=0):
            email = self.queue("one shot", backend="scripted")
            self.assertEqual(self.run_worker().failed, 1)
        email.refresh_from_db()
        self.assertEqual((email.status, email.number_of_retries), (STATUS.failed, 0))

    def test_requeued_email_is_sent_when_the_backend_recovers(self):
        ScriptedBackend.error_for_all = transient()
        with self.po(MAX_RETRIES=3, RETRY_INTERVAL=60):
            email = self.queue("recovers", backend="scripted")
            self.run_worker()
            self.assertEqual(self.status_of(email), STATUS.requeued)
            ScriptedBackend.error_for_all = None
            self.make_due(email)
            self.assertEqual(self.run_worker().sent, 1)
        email.refresh_from_db()
        self.assertEqual((email.status, email.number_of_retries), (STATUS.sent, 1))
        self.assertEqual(
            sorted(Log.objects.filter(email=email).values_list("status", flat=True)), [STATUS.sent, STATUS.failed]
        )

    def test_permanent_5xx_errors_fail_at_once(self):
        ScriptedBackend.errors = {
            "refused": smtplib.SMTPRecipientsRefused({"to@example.com": (550, b"no such user")}),
            "data 554": smtplib.SMTPDataError(554, b"rejected"),
            "sender 553": smtplib.SMTPSenderRefused(553, b"bad sender", "from@example.com"),
            "data 451": smtplib.SMTPDataError(451, b"try again later"),
        }
        with self.po(MAX_RETRIES=3):
            emails = {subject: self.queue(subject, backend="scripted") for subject in ScriptedBackend.errors}
            stats = self.run_worker()
        self.assertEqual((stats.failed, stats.requeued), (3, 1))
        for subject in ("refused", "data 554", "sender 553"):
            email = Email.objects.get(pk=emails[subject].pk)
            self.assertEqual((email.status, email.number_of_retries), (STATUS.failed, 0), subject)
        # A 4xx reply is temporary.
        self.assertEqual(self.status_of(emails["data 451"]), STATUS.requeued)

    def test_poison_email_does_not_stop_the_others(self):
        ScriptedBackend.errors = {"poison": ZeroDivisionError("unexpected bug in a backend")}
        subjects = ["before 1", "before 2", "poison", "after 1", "after 2"]
        emails = [self.queue(subject, backend="scripted") for subject in subjects]
        # A template deleted under a render_on_delivery email makes building it fail.
        template = EmailTemplate.objects.create(name="gone", subject="Hi {{ name }}", content="x")
        unbuildable = mail.send(
            ["to@example.com"], "from@example.com", template="gone", context={"name": "A"}, render_on_delivery=True
        )
        template.delete()
        # Every email in one batch, one thread: the poison one sits between good ones.
        with self.po(MAX_RETRIES=0):
            stats = self.run_worker(batch_size=100)
        self.assertEqual((stats.sent, stats.failed), (4, 2))
        self.assertEqual([m.subject for m in ScriptedBackend.sent], ["before 1", "before 2", "after 1", "after 2"])
        self.assertEqual(self.status_of(emails[2]), STATUS.failed)
        self.assertEqual(Log.objects.get(email=emails[2]).exception_type, "ZeroDivisionError")
        self.assertEqual(self.status_of(unbuildable), STATUS.failed)
        self.assertEqual(Log.objects.get(email=unbuildable).exception_type, "UnknownTemplate")
        self.assertFalse(Email.objects.filter(status__in=[STATUS.queued, STATUS.sending]).exists())

    def test_poison_email_fails_for_good_even_with_retries_left(self):
        # An unexpected exception is retried like a transient one, never forever.
        ScriptedBackend.errors = {"poison": ZeroDivisionError("bug")}
        with self.po(MAX_RETRIES=2, RETRY_INTERVAL=0):
            email = self.queue("poison", backend="scripted")
            self.queue("fine", backend="scripted")
            stats = self.run_worker()
        self.assertEqual((stats.sent, stats.requeued, stats.failed), (1, 2, 1))
        self.assertEqual(self.status_of(email), STATUS.failed)
        self.assertEqual(Log.objects.filter(email=email).count(), 3)


class SendNowTest(DeliveryTestCase):
    def test_priority_now_delivers_at_commit(self):
        waiting = self.queue("waiting")
        with self.captureOnCommitCallbacks(execute=True):
            email = self.queue("urgent", priority="now")
            self.assertEqual(django_mail.outbox, [])  # not before the commit
        self.assertEqual(self.outbox_subjects(), ["urgent"])
        self.assertEqual(email.status, STATUS.sent)
        self.assertEqual(self.status_of(email), STATUS.sent)
        self.assertEqual(Log.objects.get(email=email).status, STATUS.sent)
        # Only the urgent email was sent; the rest waits for the worker.
        self.assertEqual(self.status_of(waiting), STATUS.queued)

    def test_priority_now_failure_stays_queued(self):
        ScriptedBackend.error_for_all = transient()
        # A failed immediate attempt follows the retry policy like any other: it stays queued.
        with self.captureOnCommitCallbacks(execute=True):
            email = self.queue("urgent but down", priority="now", backend="scripted")
        self.assertEqual(ScriptedBackend.attempts, ["urgent but down"])
        self.assertEqual(email.status, STATUS.requeued)
        stored = Email.objects.get(pk=email.pk)
        self.assertEqual((stored.status, stored.number_of_retries, stored.claimed_by), (STATUS.requeued, 1, ""))
        self.assertEqual(Log.objects.get(email=email).exception_type, "SMTPServerDisconnected")

        # The worker picks it up once it is due and the backend is back.
        ScriptedBackend.error_for_all = None
        Email.objects.filter(pk=email.pk).update(scheduled_time=timezone.now() - datetime.timedelta(seconds=1))
        self.assertEqual(self.run_worker().sent, 1)
        self.assertEqual([m.subject for m in ScriptedBackend.sent], ["urgent but down"])
        self.assertEqual(self.status_of(email), STATUS.sent)

    def test_send_many_now_delivers_each_once(self):
        with self.captureOnCommitCallbacks(execute=True):
            emails = mail.send_many(
                [
                    {
                        "recipients": ["a@example.com"],
                        "sender": "f@example.com",
                        "subject": f"bulk now {i}",
                        "priority": "now",
                    }
                    for i in range(3)
                ]
            )
        self.assertEqual(sorted(self.outbox_subjects()), ["bulk now 0", "bulk now 1", "bulk now 2"])
        self.assertEqual({e.status for e in emails}, {STATUS.sent})


class ModelApiTest(DeliveryTestCase):
    def test_dispatch_sends_and_records(self):
        email = self.queue("dispatched")
        self.assertEqual(email.dispatch(), STATUS.sent)
        self.assertEqual(self.outbox_subjects(), ["dispatched"])
        self.assertEqual(self.status_of(email), STATUS.sent)
        self.assertEqual(Log.objects.get(email=email).status, STATUS.sent)

    def test_dispatch_failure_is_recorded(self):
        ScriptedBackend.error_for_all = RuntimeError("nope")
        email = self.queue("dispatch fails", backend="scripted")
        with self.po(MAX_RETRIES=0):
            self.assertEqual(email.dispatch(log_level=1), STATUS.failed)
        self.assertEqual(self.status_of(email), STATUS.failed)
        self.assertEqual(Log.objects.get(email=email).exception_type, "RuntimeError")

    def test_dispatch_without_commit_leaves_the_row(self):
        email = self.queue("not committed")
        self.assertEqual(email.dispatch(commit=False), STATUS.sent)
        self.assertEqual(email.status, STATUS.sent)
        self.assertEqual(self.status_of(email), STATUS.queued)
        self.assertFalse(Log.objects.exists())

    def test_email_message_is_the_message_delivery_sends(self):
        email = mail.send(
            ['"Doe, John" <john@example.com>'],
            "Sender <from@example.com>",
            subject="Hello",
            message="plain",
            html_message="<p>html</p>",
            cc=["cc@example.com"],
            bcc=["bcc@example.com"],
            headers={"Reply-To": "reply@example.com", "X-Campaign": "c1"},
            attachments={"note.txt": b"attached text"},
        )
        email = Email.objects.get(pk=email.pk)
        message = email.email_message()
        self.assertIsInstance(message, EmailMultiAlternatives)
        self.assertEqual(message.subject, "Hello")
        self.assertEqual(message.body, "plain")
        self.assertEqual(message.alternatives[0][0], "<p>html</p>")
        self.assertEqual(message.alternatives[0][1], "text/html")
        self.assertEqual(message.from_email, "Sender <from@example.com>")
        self.assertEqual(message.to, ['"Doe, John" <john@example.com>'])
        self.assertEqual((message.cc, message.bcc), (["cc@example.com"], ["bcc@example.com"]))
        self.assertEqual(message.extra_headers["X-Campaign"], "c1")
        self.assertEqual(message.extra_headers["Reply-To"], "reply@example.com")
        name, content, mimetype = message.attachments[0]
        self.assertEqual((name, content, mimetype), ("note.txt", "attached text", "text/plain"))
        self.assertEqual(email.prepare_email_message().subject, "Hello")


class RecipientsAndRenderingTest(DeliveryTestCase):
    def test_override_recipients(self):
        with self.po(OVERRIDE_RECIPIENTS=["qa@example.com", "qa2@example.com"]):
            email = self.queue("staging", recipients=["real@example.com"], cc=["c@example.com"], bcc=["b@example.com"])
            self.run_worker()
        message = django_mail.outbox[0]
        self.assertEqual(message.to, ["qa@example.com", "qa2@example.com"])
        self.assertEqual((message.cc, message.bcc), ([], []))
        self.assertEqual(message.recipients(), ["qa@example.com", "qa2@example.com"])
        # The stored email keeps its real recipients.
        email.refresh_from_db()
        self.assertEqual((email.to, email.cc, email.bcc), (["real@example.com"], ["c@example.com"], ["b@example.com"]))

    def test_render_on_delivery_renders_when_delivered(self):
        template = EmailTemplate.objects.create(
            name="later", subject="Hi {{ name }}", content="Dear {{ name }}", html_content="<p>{{ name }}</p>"
        )
        email = mail.send(
            ["to@example.com"],
            "from@example.com",
            template="later",
            context={"name": "Tom & Jerry"},
            render_on_delivery=True,
        )
        stored = Email.objects.get(pk=email.pk)
        self.assertEqual((stored.subject, stored.message, stored.html_message), ("", "", ""))
        # Edited after queueing: delivery uses the template as it is at delivery time.
        template.subject = "Hello {{ name }}"
        template.save()
        self.run_worker()
        message = django_mail.outbox[0]
        self.assertEqual(message.subject, "Hello Tom & Jerry")
        self.assertEqual(message.body, "Dear Tom & Jerry")
        self.assertEqual(message.alternatives[0][0], "<p>Tom &amp; Jerry</p>")
        self.assertEqual(self.status_of(email), STATUS.sent)


class SharedAttachmentTest(DeliveryTestCase):
    def test_many_threads_attach_one_shared_file_at_once(self):
        # One Attachment row serves every email with the same content: threads
        # building those emails side by side must not share a file handle.
        mail.send_many(
            [
                {
                    "recipients": [f"u{i}@example.com"],
                    "sender": "from@example.com",
                    "subject": f"shared {i}",
                    "message": "body",
                    "attachments": {"terms.pdf": b"%PDF shared terms"},
                }
                for i in range(60)
            ]
        )
        stats = Worker(threads=8).run()
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (60, 0, 0))
        self.assertEqual(len(django_mail.outbox), 60)
        for message in django_mail.outbox:
            self.assertEqual(message.attachments[0][:2], ("terms.pdf", b"%PDF shared terms"))


class ClaimTest(DeliveryTestCase):
    def test_claimed_email_cannot_be_claimed_again(self):
        email = self.queue("mine")
        token, claimed = Worker().claim(10)
        self.assertEqual([e.pk for e in claimed], [email.pk])
        stored = Email.objects.get(pk=email.pk)
        self.assertEqual((stored.status, stored.claimed_by), (STATUS.sending, token))
        self.assertGreater(stored.lease_expires_at, timezone.now())

        other_token, others = Worker().claim(10)
        self.assertNotEqual(other_token, token)
        self.assertEqual(others, [])
        # Nor by a run: the email is in flight elsewhere.
        self.assertEqual(self.run_worker().attempted, 0)
        self.assertEqual(django_mail.outbox, [])

    def test_claim_with_ids_takes_only_due_queued_emails(self):
        due = self.queue("due")
        later = self.queue("later", scheduled_time=timezone.now() + datetime.timedelta(hours=1))
        _token, claimed = Worker().claim(10, ids=[due.pk, later.pk])
        self.assertEqual([e.pk for e in claimed], [due.pk])

    def test_stale_lease_is_requeued_by_the_next_run(self):
        now = timezone.now()
        stale = self.queue("stale")
        alive = self.queue("alive")
        Email.objects.filter(pk=stale.pk).update(
            status=STATUS.sending, claimed_by="dead-host:1:abc", lease_expires_at=now - datetime.timedelta(minutes=1)
        )
        Email.objects.filter(pk=alive.pk).update(
            status=STATUS.sending, claimed_by="live-host:2:def", lease_expires_at=now + datetime.timedelta(minutes=10)
        )
        stats = self.run_worker()
        self.assertEqual(stats.sent, 1)
        self.assertEqual(self.outbox_subjects(), ["stale"])
        stale.refresh_from_db()
        self.assertEqual((stale.status, stale.claimed_by), (STATUS.sent, ""))
        alive.refresh_from_db()
        self.assertEqual((alive.status, alive.claimed_by), (STATUS.sending, "live-host:2:def"))

    def test_results_and_the_next_claim_share_one_transaction(self):
        first = self.queue("first")
        self.queue("second")
        worker = Worker()
        token, [claimed] = worker.claim(1)
        with CaptureQueriesContext(connection) as queries:
            _token, [nxt] = worker.record_then(None, [Outcome(claimed, token=token)], lambda: worker.claim(1))
        self.assertEqual((claimed.pk, self.status_of(first)), (first.pk, STATUS.sent))
        self.assertNotEqual(nxt.pk, first.pk)
        sql = [query["sql"].split()[0].upper() for query in queries.captured_queries]
        # One savepoint (a transaction outside tests) around the sent UPDATE, the Log rows and the claim.
        self.assertEqual(sql.count("SAVEPOINT"), 1, sql)
        opened, closed = sql.index("SAVEPOINT"), sql.index("RELEASE")
        inside = [query["sql"] for query in queries.captured_queries[opened:closed]]
        self.assertTrue(any("post_office_log" in q and q.upper().startswith("INSERT") for q in inside), inside)
        self.assertTrue(any("RETURNING" in q or "FOR UPDATE" in q or "LIMIT" in q for q in inside), inside)

    def test_result_from_an_outdated_claim_is_not_written(self):
        email = self.queue("contested")
        slow = Worker()
        old_token, [slow_copy] = slow.claim(1)
        # The slow worker's lease runs out and another worker takes the email over.
        Email.objects.filter(pk=email.pk).update(lease_expires_at=timezone.now() - datetime.timedelta(seconds=1))
        fast = Worker()
        self.assertEqual(fast.requeue_stale_leases(), 1)
        new_token, [fast_copy] = fast.claim(1)
        self.assertNotEqual(new_token, old_token)

        slow.record(old_token, [Outcome(slow_copy, transient())])
        slow.record(old_token, [Outcome(slow_copy)])
        stored = Email.objects.get(pk=email.pk)
        self.assertEqual((stored.status, stored.claimed_by, stored.number_of_retries), (STATUS.sending, new_token, 0))

        fast.record(new_token, [Outcome(fast_copy)])
        stored.refresh_from_db()
        self.assertEqual((stored.status, stored.claimed_by), (STATUS.sent, ""))
        # A late write after the email is done changes nothing either.
        slow.record(old_token, [Outcome(slow_copy, transient())])
        self.assertEqual(self.status_of(email), STATUS.sent)


class ClaimStatementTest(DeliveryTestCase):
    """The claim's compiled statement is reused; each claim still uses its own time and order."""

    def test_a_reused_statement_uses_the_current_time(self):
        self.assertEqual(Worker().claim(10)[1], [])  # compiles the statement for a limit of 10
        soon = timezone.now() + datetime.timedelta(hours=1)
        scheduled = self.queue("scheduled", scheduled_time=soon)
        expiring = self.queue("expiring", expires_at=soon)
        self.assertEqual([e.pk for e in Worker().claim(10)[1]], [expiring.pk])
        Email.objects.filter(pk=expiring.pk).update(status=STATUS.queued, claimed_by="")
        later = soon + datetime.timedelta(minutes=1)
        with mock.patch("django.utils.timezone.now", return_value=later):
            _token, claimed = Worker().claim(10)
        # Past its scheduled time the first is due; past its expiry the second is not.
        self.assertEqual([e.pk for e in claimed], [scheduled.pk])
        self.assertEqual(claimed[0].lease_expires_at, later + Worker().lease)

    def test_sending_order_change_is_followed(self):
        low = self.queue("low", priority="low")
        high = self.queue("high", priority="high")
        self.assertEqual([e.pk for e in Worker().claim(1)[1]], [high.pk])
        Email.objects.filter(pk=high.pk).update(status=STATUS.queued, claimed_by="")
        with self.po(SENDING_ORDER=["created"]):
            self.assertEqual([e.pk for e in Worker().claim(1)[1]], [low.pk])

    def test_claimed_instances_equal_what_the_orm_loads(self):
        soon = timezone.now() + datetime.timedelta(days=1)
        queued = [
            self.queue("plain"),
            self.queue(
                "full",
                cc=["Copy <cc@example.com>"],
                bcc=["hidden@example.com"],
                headers={"X-Tag": "ä", "Reply-To": "r@example.com"},
                expires_at=soon,
                priority="high",
            ),
        ]
        Email.objects.filter(pk=queued[0].pk).update(alternatives=[["<b>x</b>", "text/x-other"]], context={})
        token, claimed = Worker().claim(10)
        self.assertEqual(len(claimed), 2)
        for email in claimed:
            stored = Email.objects.get(pk=email.pk)
            for field in Email._meta.concrete_fields:
                if field.name == "created":
                    continue  # left deferred by the claim
                with self.subTest(email=email.subject, field=field.name):
                    self.assertEqual(getattr(email, field.attname), getattr(stored, field.attname))
            self.assertEqual(email.claimed_by, token)
            self.assertEqual(email.created, stored.created)  # loaded on access
            self.assertFalse(email._state.adding)
        # JSON values are each instance's own, not shared.
        claimed[0].cc.append("x@example.com")
        self.assertEqual(claimed[1].cc, ["Copy <cc@example.com>"] if claimed[1].subject == "full" else [])


class PaceTest(TestCase):
    """How many jobs a batch is split into follows whether the threads wait for the server or for each other."""

    def test_narrows_when_replies_are_there_before_the_threads_and_widens_when_they_are_not(self):
        pace = Pace(32)
        self.assertEqual(pace.width(), 32)  # every thread to start with, as a slow server needs
        widths = []
        for _ in range(5):
            pace.note(read=60, waited=20)  # a third of the replies had to be waited for
            widths.append(pace.width())
        self.assertEqual(widths, [16, 8, 4, 2, 2])  # two at least
        pace.note(read=60, waited=60)
        self.assertEqual(pace.width(), 4)
        for _ in range(10):
            pace.note(read=60, waited=59)
            pace.width()
        self.assertEqual(pace.width(), 32)  # never more than the worker's threads

    def test_between_the_thresholds_and_on_too_few_replies_nothing_changes(self):
        pace = Pace(8)
        pace.note(read=100, waited=85)
        self.assertEqual(pace.width(), 8)
        pace.note(read=10, waited=0)  # too few to judge
        self.assertEqual(pace.width(), 8)
        pace.note(read=40, waited=0)  # with the 10 before: 50, none waited for
        self.assertEqual(pace.width(), 4)

    def test_one_thread_stays_one(self):
        pace = Pace(1)
        pace.note(read=100, waited=0)
        self.assertEqual(pace.width(), 1)

    def test_a_batch_is_dealt_out_in_turn_per_alias(self):
        emails = [Email(pk=n, backend_alias="other" if n % 5 == 0 else "") for n in range(1, 11)]
        jobs = deal("token", emails, 3)
        self.assertEqual(
            [(job.alias, [e.pk for e in job.emails]) for job in jobs],
            [("default", [1, 4, 8]), ("default", [2, 6, 9]), ("default", [3, 7]), ("other", [5]), ("other", [10])],
        )


class QueryCostTest(DeliveryTestCase):
    """A run's queries do not grow per email, only per result flush.

    Results are written in chunks (at most ``FLUSH_EVERY`` emails, or whatever
    finished within ``FLUSH_SECONDS``), each chunk a constant number of queries:
    a savepoint, up to one UPDATE per outcome kind (sent, failed, requeued), one
    bulk INSERT of Log rows and the release. Everything else in a run (stale
    leases, expiry, claiming with its attachment prefetch) is the same for 10
    emails as for 40. How many flushes a run makes depends on timing, so the
    test counts the queries inside ``Worker.record`` separately.
    """

    MAX_QUERIES_PER_FLUSH = 6

    def measure(self, count: int) -> tuple[int, list[int]]:
        mail.send_many(
            [
                {
                    "recipients": [f"user{i}@example.com"],
                    "sender": "from@example.com",
                    "subject": f"cost {count} {i}",
                    "message": "body",
                    "attachments": {"same.txt": b"shared attachment"} if i % 2 else None,
                }
                for i in range(count)
            ]
        )
        per_flush: list[int] = []
        original_record = Worker.record

        def counting_record(worker, token, outcomes):
            before = len(connection.queries)
            original_record(worker, token, outcomes)
            per_flush.append(len(connection.queries) - before)

        with self.po(BATCH_SIZE=1000), mock.patch.object(Worker, "record", counting_record):
            with CaptureQueriesContext(connection) as queries:
                stats = Worker().run()
        self.assertEqual(stats.sent, count)
        return len(queries), per_flush

    def test_query_count_does_not_grow_per_email(self):
        self.measure(1)  # warm up: connection setup queries are not part of the comparison
        total_10, flushes_10 = self.measure(10)
        total_40, flushes_40 = self.measure(40)
        for flush in flushes_10 + flushes_40:
            self.assertLessEqual(flush, self.MAX_QUERIES_PER_FLUSH)
        # Outside result flushes, 40 emails cost exactly what 10 cost.
        self.assertEqual(total_40 - sum(flushes_40), total_10 - sum(flushes_10))
        # So the difference is bounded by the flushes alone.
        self.assertLessEqual(total_40 - total_10, len(flushes_40) * self.MAX_QUERIES_PER_FLUSH)
        self.assertEqual(Log.objects.count(), 51)


class ConcurrentWorkersTest(TransactionTestCase):
    """Two real ``send_queued_mail`` processes on one queue deliver each email exactly once."""

    TOTAL = 300

    def start_worker(self, env: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "manage.py", "send_queued_mail", "--settings=tests.settings", "--batch-size=20"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def test_two_processes_deliver_every_email_exactly_once(self):
        mail.send_many(
            [
                {
                    "recipients": [f"user{i}@example.com"],
                    "sender": "from@example.com",
                    "subject": f"concurrent {i}",
                    "message": f"body {i}",
                    "headers": {"X-Test-Seq": str(i)},
                    "priority": ("low", "medium", "high")[i % 3],
                }
                for i in range(self.TOTAL)
            ]
        )
        expired = mail.send_many(
            [
                {
                    "recipients": ["late@example.com"],
                    "sender": "from@example.com",
                    "subject": f"expired {i}",
                    "expires_at": timezone.now() - datetime.timedelta(minutes=1),
                }
                for i in range(5)
            ]
        )
        with SMTPSink() as sink:
            env = {
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "POST_OFFICE_TEST_DB": os.environ.get("POST_OFFICE_TEST_DB", "sqlite"),
                "POST_OFFICE_DB_NAME": str(connection.settings_dict["NAME"]),
                "POST_OFFICE_TEST_SMTP_PORT": str(sink.port),
            }
            workers = [self.start_worker(env) for _ in range(2)]
            try:
                outputs = [worker.communicate(timeout=240) for worker in workers]
            finally:
                for worker in workers:
                    if worker.poll() is None:
                        worker.kill()
                        worker.wait()
        for worker, (_out, err) in zip(workers, outputs):
            self.assertEqual(worker.returncode, 0, err)

        arrived = Counter(received.message["X-Test-Seq"] for received in sink.messages)
        self.assertEqual({seq for seq, n in arrived.items() if n > 1}, set(), "emails delivered twice")
        self.assertEqual(set(arrived), {str(i) for i in range(self.TOTAL)})
        self.assertEqual(len(sink.messages), self.TOTAL)

        self.assertEqual(Email.objects.filter(status=STATUS.sent).count(), self.TOTAL)
        self.assertEqual(
            set(Email.objects.filter(pk__in=[e.pk for e in expired]).values_list("status", flat=True)), {STATUS.failed}
        )
        # One Log per attempt: no email was attempted (or expired) twice.
        self.assertEqual(Log.objects.count(), self.TOTAL + len(expired))
        self.assertFalse(Log.objects.values("email").annotate(n=Count("id")).filter(n__gt=1).exists())
        # Together the two runs report every email once.
        reported = [re.search(r"(\d+) sent, \d+ failed, \d+ requeued, (\d+) expired", out) for out, _err in outputs]
        self.assertTrue(all(reported), outputs)
        self.assertEqual(sum(int(m.group(1)) for m in reported), self.TOTAL)
        self.assertEqual(sum(int(m.group(2)) for m in reported), len(expired))


class QueryingBackend(LocmemBackend):
    """A backend that reads the database while it sends (as one logging to a table would)."""

    def send_messages(self, messages):
        Email.objects.count()
        return super().send_messages(messages)


class ThreadConnectionsTest(TransactionTestCase):
    """Delivery threads do not keep database connections open between jobs (a long-running worker has 32)."""

    def open_connections(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0]

    def test_threads_close_what_they_opened(self):
        if connection.vendor != "postgresql":
            self.skipTest("counts server connections in pg_stat_activity")
        for i in range(20):
            mail.send([f"user{i}@example.com"], "from@example.com", subject=f"m{i}", message="m")
        before = self.open_connections()
        with self.settings(POST_OFFICE={"BACKENDS": {"default": f"{__name__}.QueryingBackend"}}):
            worker = Worker(threads=4)
            with worker:  # as runmailer keeps it: the threads live on after the pass
                worker.stats.sent = 0
                worker.run_pass()
                self.assertEqual(worker.stats.sent, 20)
                self.assertEqual(self.open_connections(), before, "a delivery thread kept its connection")
