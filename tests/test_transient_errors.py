"""A deadlock while a worker records results does not end its pass (post_office.delivery.transient).

Before, the database error ended the pass: the emails it had sent stayed
``sending``, unrecorded, and went out a second time once their lease ran out
(tests/scale saw it on MariaDB). The errors here are real ones, raised by the
database server through the driver and Django's wrappers: PostgreSQL's
``RAISE ... USING ERRCODE '40P01'`` (deadlock detected) and MariaDB's
``SIGNAL ... MYSQL_ERRNO 1213`` (deadlock found), inside the transaction that
writes a chunk of results. SQLite has no such error; it runs the checks of
:func:`is_transient` only.
"""

from __future__ import annotations

from unittest import mock, skipIf

from django.core import mail as django_mail
from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.test import SimpleTestCase, TransactionTestCase

from post_office.delivery import record
from post_office.delivery.transient import is_transient, retrying
from post_office.delivery.worker import Worker
from post_office.models import STATUS, Email, Log
from tests.helpers import QueueTestMixin

LOCMEM = {"default": "django.core.mail.backends.locmem.EmailBackend"}

#: SQL that makes the server refuse the current statement as a deadlock.
DEADLOCK_SQL = {
    "postgresql": "DO $$ BEGIN RAISE EXCEPTION 'deadlock (test)' USING ERRCODE = '40P01'; END $$",
    "mysql": "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'Deadlock (test)'",
}


def raise_deadlock() -> None:
    with connection.cursor() as cursor:
        cursor.execute(DEADLOCK_SQL[connection.vendor])


class Cause(Exception):
    def __init__(self, *args: object, sqlstate: str | None = None) -> None:
        super().__init__(*args)
        self.sqlstate = sqlstate


def wrapped(error: Exception, cause: Exception) -> Exception:
    error.__cause__ = cause
    return error


class IsTransientTest(SimpleTestCase):
    def test_deadlocks_lock_timeouts_and_serialization_failures_are_transient(self):
        self.assertTrue(is_transient(wrapped(OperationalError("x"), Cause(sqlstate="40P01"))))
        self.assertTrue(is_transient(wrapped(OperationalError("x"), Cause(sqlstate="40001"))))
        self.assertTrue(is_transient(wrapped(OperationalError(1213, "Deadlock found"), Cause(1213, "Deadlock"))))
        self.assertTrue(is_transient(wrapped(OperationalError(1205, "Lock wait"), Cause(1205, "Lock wait"))))

    def test_other_database_errors_are_not(self):
        self.assertFalse(is_transient(wrapped(OperationalError("x"), Cause(sqlstate="08006"))))  # connection lost
        self.assertFalse(is_transient(wrapped(IntegrityError(1062, "Duplicate"), Cause(1062, "Duplicate"))))
        self.assertFalse(is_transient(OperationalError("server closed the connection unexpectedly")))
        self.assertFalse(is_transient(OperationalError("database is locked")))


class RetryingTest(TransactionTestCase):
    def test_a_transient_error_runs_the_write_again(self):
        calls = []

        def write():
            calls.append(1)
            if len(calls) < 3:
                raise wrapped(OperationalError(1213, "Deadlock"), Cause(1213, "Deadlock"))
            return "done"

        with self.assertLogs("post_office", "WARNING") as logs:
            self.assertEqual(retrying(write, "a test write"), "done")
        self.assertEqual(len(calls), 3)
        self.assertIn("refused a test write for the moment", logs.output[0])

    def test_inside_a_callers_transaction_the_error_goes_up(self):
        calls = []

        def write():
            calls.append(1)
            raise wrapped(OperationalError(1213, "Deadlock"), Cause(1213, "Deadlock"))

        with self.assertRaises(OperationalError), transaction.atomic():
            retrying(write, "a test write")
        self.assertEqual(len(calls), 1)

    def test_other_errors_go_up_at_once_and_retries_end(self):
        calls = []

        def broken():
            calls.append(1)
            raise DatabaseError("no such table")

        with self.assertRaises(DatabaseError):
            retrying(broken, "a test write")
        self.assertEqual(len(calls), 1)

        def always():
            calls.append(1)
            raise wrapped(OperationalError(1213, "Deadlock"), Cause(1213, "Deadlock"))

        with mock.patch("post_office.delivery.transient.time.sleep"), self.assertRaises(OperationalError):
            with self.assertLogs("post_office", "WARNING"):
                retrying(always, "a test write")
        self.assertEqual(len(calls), 1 + 5)


@skipIf(connection.vendor == "sqlite", "a server-side deadlock error: PostgreSQL and MariaDB")
class DeadlockWhileRecordingTest(QueueTestMixin, TransactionTestCase):
    backends = LOCMEM

    def test_a_deadlock_while_recording_results_loses_nothing_and_sends_nothing_twice(self):
        from post_office import mail

        emails = [
            mail.send(["to@example.com"], "from@example.com", subject=f"mail {i}", message="b") for i in range(250)
        ]
        real_record_sent = record._record_sent
        refused = []

        def record_sent_with_a_deadlock(*args, **kwargs):
            if len(refused) < 2:
                refused.append(1)
                raise_deadlock()  # the server refuses: this chunk's transaction is rolled back
            return real_record_sent(*args, **kwargs)

        with mock.patch.object(record, "_record_sent", record_sent_with_a_deadlock):
            with self.assertLogs("post_office", "WARNING") as logs:
                stats = Worker(threads=2, batch_size=50).run()

        self.assertEqual(len(refused), 2)
        self.assertEqual(sum("refused the results of a batch for the moment" in line for line in logs.output), 2)
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (250, 0, 0))
        subjects = [message.subject for message in django_mail.outbox]
        self.assertEqual(sorted(subjects), sorted(f"mail {i}" for i in range(250)))  # each once
        self.assertEqual(
            Email.objects.filter(pk__in=[e.pk for e in emails], status=STATUS.sent, claimed_by="").count(), 250
        )
        self.assertEqual(Log.objects.filter(status=STATUS.sent).count(), 250)
        self.assertEqual(Email.objects.filter(number_of_retries__gt=0).count(), 0)

    def test_without_retrying_the_same_deadlock_ended_the_pass(self):
        """What the retry prevents, shown on the same fault: the error ends the pass, sent mail stays unrecorded."""
        from post_office import mail

        for i in range(20):
            mail.send(["to@example.com"], "from@example.com", subject=f"mail {i}", message="b")

        def record_sent_with_a_deadlock(*args, **kwargs):
            raise_deadlock()

        with mock.patch.object(record, "_record_sent", record_sent_with_a_deadlock):
            with mock.patch("post_office.delivery.transient.RETRIES", 0), self.assertRaises(OperationalError):
                Worker(threads=1, batch_size=20).run()
        self.assertEqual(len(django_mail.outbox), 20)  # handed to the backend ...
        self.assertEqual(Email.objects.filter(status=STATUS.sending).count(), 20)  # ... and not recorded
