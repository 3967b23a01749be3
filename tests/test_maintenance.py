"""retry_deferred and purge_mail_log: filters, dry runs, batches, and what they never touch."""

from __future__ import annotations

import datetime
import re
from io import StringIO
from unittest import mock

from django.core.management import CommandError, call_command
from django.db import connection
from django.test import SimpleTestCase, TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from post_office import mail
from post_office.exceptions import InvalidArgument
from post_office.maintenance import FailedMailFilter, parse_age, purge_logs, requeue_failed
from post_office.models import STATUS, Email, EmailTemplate, Log

NOW_ISH = datetime.timedelta(seconds=5)


def make(subject: str, status: int = STATUS.failed, age: datetime.timedelta = datetime.timedelta(), **kwargs) -> Email:
    """An email in ``status`` whose last change was ``age`` ago."""
    kwargs.setdefault("recipients", ["to@example.com"])
    kwargs.setdefault("sender", "from@example.com")
    if "template" not in kwargs:
        kwargs.setdefault("message", "body")
        kwargs["subject"] = subject
    email = mail.send(**kwargs)
    Email.objects.filter(pk=email.pk).update(
        subject=subject,
        status=status,
        number_of_retries=3,
        scheduled_time=timezone.now() - datetime.timedelta(hours=1),
        claimed_by="old-worker:1:abc" if status == STATUS.sending else "",
        lease_expires_at=timezone.now() + datetime.timedelta(minutes=5) if status == STATUS.sending else None,
        last_updated=timezone.now() - age,
    )
    return email


def log(email: Email, exception_type: str = "", message: str = "", *, status: int = STATUS.failed, age_days=0) -> Log:
    entry = Log.objects.create(email=email, status=status, exception_type=exception_type, message=message)
    if age_days:
        Log.objects.filter(pk=entry.pk).update(date=timezone.now() - datetime.timedelta(days=age_days))
    return entry


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def statuses() -> dict[str, int]:
    return dict(Email.objects.values_list("subject", "status"))


class ParseAgeTest(SimpleTestCase):
    def test_units(self):
        cases = {
            "90": datetime.timedelta(minutes=90),
            90: datetime.timedelta(minutes=90),
            "30s": datetime.timedelta(seconds=30),
            "15m": datetime.timedelta(minutes=15),
            "2h": datetime.timedelta(hours=2),
            "3d": datetime.timedelta(days=3),
            "1w": datetime.timedelta(weeks=1),
            " 2H ": datetime.timedelta(hours=2),
            "0": datetime.timedelta(0),
        }
        for text, expected in cases.items():
            self.assertEqual(parse_age(text), expected, text)

    def test_bad_ages_name_the_value(self):
        for text in ["", "-1", "2x", "1.5h", "h", "2 days", "1h30m"]:
            with self.assertRaises(InvalidArgument, msg=text) as caught:
                parse_age(text)
            self.assertIn(repr(text), str(caught.exception))
            self.assertIsInstance(caught.exception, ValueError)


class RetryDeferredTest(TestCase):
    def test_requeues_failed_mail_only(self):
        for status in STATUS:
            make(status.label, status=status)
        output = run("retry_deferred")
        self.assertIn("1 failed emails requeued", output)
        self.assertEqual(
            statuses(),
            {
                "sent": STATUS.sent,
                "failed": STATUS.queued,
                "queued": STATUS.queued,
                "requeued": STATUS.requeued,
                "sending": STATUS.sending,
                "cancelled": STATUS.cancelled,  # cancelled in the admin: retry_deferred does not undo that
            },
        )
        # The others keep every field as it was, the claim of the one in flight included.
        sending = Email.objects.get(subject="sending")
        self.assertEqual((sending.claimed_by, sending.number_of_retries), ("old-worker:1:abc", 3))
        self.assertIsNotNone(sending.lease_expires_at)
        self.assertEqual(Email.objects.get(subject="requeued").number_of_retries, 3)

    def test_requeued_email_starts_afresh_and_is_due(self):
        email = make("failed")
        Email.objects.filter(pk=email.pk).update(
            claimed_by="host:1:expired:abc", scheduled_time=timezone.now() + datetime.timedelta(days=1)
        )
        before = timezone.now()
        self.assertEqual(requeue_failed(), 1)
        email.refresh_from_db()
        self.assertEqual(
            (email.status, email.number_of_retries, email.scheduled_time, email.claimed_by, email.lease_expires_at),
            (STATUS.queued, 0, None, "", None),
        )
        self.assertGreaterEqual(email.last_updated, before)
        self.assertEqual(list(Email.objects.due().values_list("pk", flat=True)), [email.pk])

    def test_requeued_mail_is_delivered_by_the_next_run(self):
        from post_office.delivery import Worker

        make("comes back")
        requeue_failed()
        stats = Worker(threads=1).run()
        self.assertEqual(stats.sent, 1)
        self.assertEqual(statuses(), {"comes back": STATUS.sent})

    def test_expired_failed_mail_is_not_requeued(self):
        # It would only fail again as expired at the next run.
        make("expired", expires_at=timezone.now() + datetime.timedelta(hours=1))
        Email.objects.filter(subject="expired").update(expires_at=timezone.now() - datetime.timedelta(minutes=1))
        make("not yet expired", expires_at=timezone.now() + datetime.timedelta(hours=1))
        self.assertEqual(requeue_failed(), 1)
        self.assertEqual(statuses(), {"expired": STATUS.failed, "not yet expired": STATUS.queued})

    def test_older_than_and_newer_than_use_the_last_change(self):
        make("10 minutes", age=datetime.timedelta(minutes=10))
        make("3 hours", age=datetime.timedelta(hours=3))
        make("2 days", age=datetime.timedelta(days=2))
        make("2 weeks", age=datetime.timedelta(weeks=2))

        self.assertIn("2 failed emails would be requeued", run("retry_deferred", "--older-than", "1d", "--dry-run"))
        self.assertEqual(statuses(), dict.fromkeys(["10 minutes", "3 hours", "2 days", "2 weeks"], STATUS.failed))

        self.assertIn("2 failed emails requeued", run("retry_deferred", "--older-than", "60", "--newer-than", "3d"))
        self.assertEqual(
            statuses(),
            {"10 minutes": STATUS.failed, "3 hours": STATUS.queued, "2 days": STATUS.queued, "2 weeks": STATUS.failed},
        )
        self.assertIn("1 failed emails requeued", run("retry_deferred", "--newer-than", "30m"))
        self.assertEqual(statuses()["10 minutes"], STATUS.queued)
        self.assertEqual(statuses()["2 weeks"], STATUS.failed)

    def test_template_filter_matches_the_name_in_every_language(self):
        welcome = EmailTemplate.objects.create(name="welcome", subject="Hi", content="Hello")
        EmailTemplate.objects.create(
            name="welcome", language="de", default_template=welcome, subject="Hallo", content="x"
        )
        EmailTemplate.objects.create(name="reset", subject="Reset", content="Reset")
        make("welcome en", template="welcome")
        make("welcome de", template="welcome", language="de")
        make("reset", template="reset")
        make("plain")
        self.assertIn("2 failed emails requeued", run("retry_deferred", "--template", "welcome"))
        self.assertEqual(
            statuses(),
            {"welcome en": STATUS.queued, "welcome de": STATUS.queued, "reset": STATUS.failed, "plain": STATUS.failed},
        )
        self.assertIn("0 failed emails requeued", run("retry_deferred", "--template", "no such template"))

    def test_error_filter_looks_at_the_latest_log_only(self):
        auth = make("auth")
        log(auth, "SMTPServerDisconnected", "Connection unexpectedly closed")
        log(auth, "SMTPAuthenticationError", "(535, b'5.7.8 Username and Password not accepted')")
        recovered_then_refused = make("refused")
        log(recovered_then_refused, "SMTPAuthenticationError", "(535, b'bad credentials')")
        log(recovered_then_refused, "SMTPRecipientsRefused", "{'to@example.com': (550, b'no such user')}")
        expired = make("expired")
        log(expired, "Expired", "expires_at has passed")
        make("no log")

        # The type or the message, any case.
        self.assertEqual(requeue_failed(FailedMailFilter(error="authentication"), dry_run=True), 1)
        self.assertEqual(requeue_failed(FailedMailFilter(error="password NOT accepted"), dry_run=True), 1)
        self.assertEqual(requeue_failed(FailedMailFilter(error="SMTP"), dry_run=True), 2)
        # An earlier error does not count once a later attempt failed differently.
        self.assertEqual(requeue_failed(FailedMailFilter(error="disconnected"), dry_run=True), 0)

        self.assertIn("1 failed emails requeued", run("retry_deferred", "--error", "AuthenticationError"))
        self.assertEqual(
            statuses(),
            {"auth": STATUS.queued, "refused": STATUS.failed, "expired": STATUS.failed, "no log": STATUS.failed},
        )

    def test_latest_log_by_id_when_dates_are_equal(self):
        email = make("same second")
        first = log(email, "SMTPDataError", "first")
        second = log(email, "TimeoutError", "second")
        Log.objects.filter(pk__in=[first.pk, second.pk]).update(date=timezone.now())
        self.assertEqual(requeue_failed(FailedMailFilter(error="first"), dry_run=True), 0)
        self.assertEqual(requeue_failed(FailedMailFilter(error="timeout"), dry_run=True), 1)

    def test_filters_combine(self):
        EmailTemplate.objects.create(name="digest", subject="Digest", content="x")
        old_digest = make("old digest", template="digest", age=datetime.timedelta(days=2))
        log(old_digest, "SMTPDataError", "(451, b'try later')")
        new_digest = make("new digest", template="digest")
        log(new_digest, "SMTPDataError", "(451, b'try later')")
        old_other = make("old other", age=datetime.timedelta(days=2))
        log(old_other, "SMTPDataError", "(451, b'try later')")
        output = run("retry_deferred", "--template", "digest", "--older-than", "1d", "--error", "451")
        self.assertIn("1 failed emails requeued", output)
        self.assertEqual(
            statuses(), {"old digest": STATUS.queued, "new digest": STATUS.failed, "old other": STATUS.failed}
        )

    def test_dry_run_changes_nothing(self):
        for i in range(3):
            make(f"failed {i}")
        with CaptureQueriesContext(connection) as queries:
            output = run("retry_deferred", "--dry-run")
        self.assertIn("3 failed emails would be requeued", output)
        self.assertFalse([q for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")])
        self.assertEqual(set(statuses().values()), {STATUS.failed})

    def test_requeues_in_batches(self):
        for i in range(5):
            make(f"failed {i}")
        make("sent", status=STATUS.sent)
        with CaptureQueriesContext(connection) as queries:
            output = run("retry_deferred", "--batch-size", "2")
        self.assertIn("5 failed emails requeued", output)
        updates = [q["sql"] for q in queries if re.match(r'\s*UPDATE [`"]?post_office_email[`"]?', q["sql"], re.I)]
        self.assertEqual(len(updates), 3, updates)  # 2 + 2 + 1
        self.assertEqual(Email.objects.filter(status=STATUS.queued).count(), 5)
        self.assertEqual(statuses()["sent"], STATUS.sent)

    def test_email_that_left_failed_meanwhile_is_not_touched(self):
        # Between choosing a batch and updating it, someone else resends an email.
        first, second = make("first"), make("second")
        original = Email.objects.filter

        def filter_then_send(*args, **kwargs):
            if kwargs.get("id__in") == [first.pk, second.pk]:
                Email.objects.filter(pk=second.pk).update(status=STATUS.sent)
            return original(*args, **kwargs)

        with mock.patch.object(Email.objects, "filter", side_effect=filter_then_send):
            self.assertEqual(requeue_failed(), 1)
        self.assertEqual(statuses(), {"first": STATUS.queued, "second": STATUS.sent})

    def test_invalid_options_are_refused(self):
        with self.assertRaisesMessage(CommandError, "--older-than"):
            run("retry_deferred", "--older-than", "yesterday")
        with self.assertRaisesMessage(CommandError, "is not an age"):
            run("retry_deferred", "--newer-than", "2x")
        with self.assertRaisesMessage(CommandError, "--batch-size must be at least 1"):
            run("retry_deferred", "--batch-size", "0")
        with self.assertRaises(InvalidArgument):
            requeue_failed(batch_size=0)


class PurgeMailLogTest(TestCase):
    def setUp(self) -> None:
        self.email = make("logged", status=STATUS.sent)

    def logs(self) -> set[str]:
        return set(Log.objects.values_list("message", flat=True))

    def make_logs(self) -> None:
        log(self.email, message="old success", status=STATUS.sent, age_days=10)
        log(self.email, "SMTPDataError", "old failure", age_days=10)
        log(self.email, message="new success", status=STATUS.sent, age_days=2)
        log(self.email, "SMTPDataError", "new failure", age_days=2)

    def test_default_deletes_old_successes_only(self):
        self.make_logs()
        output = run("purge_mail_log", "7")
        self.assertIn("1 success log rows deleted", output)
        self.assertEqual(self.logs(), {"old failure", "new success", "new failure"})
        # Emails are never deleted by this command.
        self.assertTrue(Email.objects.filter(pk=self.email.pk).exists())

    def test_result_failure(self):
        self.make_logs()
        self.assertIn("1 failure log rows deleted", run("purge_mail_log", "7", "-r", "failure"))
        self.assertEqual(self.logs(), {"old success", "new success", "new failure"})

    def test_result_all(self):
        self.make_logs()
        self.assertIn("2 all log rows deleted", run("purge_mail_log", "7", "--result", "all"))
        self.assertEqual(self.logs(), {"new success", "new failure"})

    def test_days_zero_deletes_every_log_of_that_result(self):
        self.make_logs()
        log(self.email, message="just now", status=STATUS.sent)
        Log.objects.filter(message="just now").update(date=timezone.now() - datetime.timedelta(seconds=1))
        run("purge_mail_log", "0")
        self.assertEqual(self.logs(), {"old failure", "new failure"})

    def test_dry_run_deletes_nothing(self):
        self.make_logs()
        self.assertIn("2 all log rows would be deleted", run("purge_mail_log", "7", "-r", "all", "--dry-run"))
        self.assertEqual(Log.objects.count(), 4)

    def test_deletes_in_batches(self):
        for i in range(5):
            log(self.email, message=f"old {i}", status=STATUS.sent, age_days=30)
        log(self.email, message="recent", status=STATUS.sent, age_days=1)
        with CaptureQueriesContext(connection) as queries:
            self.assertEqual(purge_logs(7, batch_size=2), 5)
        deletes = [q["sql"] for q in queries if re.match(r'\s*DELETE FROM [`"]?post_office_log[`"]?', q["sql"], re.I)]
        self.assertEqual(len(deletes), 3, deletes)  # 2 + 2 + 1
        self.assertEqual(self.logs(), {"recent"})

    def test_invalid_arguments_are_refused(self):
        with self.assertRaisesMessage(CommandError, "DAYS must be zero or more"):
            run("purge_mail_log", "-1")
        with self.assertRaisesMessage(CommandError, "invalid choice"):
            run("purge_mail_log", "7", "-r", "deferred")
        with self.assertRaises(CommandError):
            run("purge_mail_log")  # DAYS is required, as in django-mailer
        with self.assertRaisesMessage(CommandError, "--batch-size must be at least 1"):
            run("purge_mail_log", "7", "-b", "0")
        with self.assertRaises(InvalidArgument):
            purge_logs(7, "sometimes")
