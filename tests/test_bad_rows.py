"""Rows that enqueue would have refused (written through the ORM, raw SQL or an old version) fail alone, for good.

Each test puts one bad row among good ones and runs a real delivery over SMTP:
the bad email fails on its first attempt with a Log row saying why (retrying
cannot help), and every other email of the batch is delivered.
"""

from __future__ import annotations

import datetime
import tracemalloc
from typing import Any

from django.db import connection
from django.test import TestCase, TransactionTestCase

from post_office import mail
from post_office.delivery import Worker
from post_office.models import STATUS, Email, Log
from tests.faulty_smtp import FaultySMTP
from tests.helpers import delivering_to

SENDER = "from@example.com"


class BadRowMixin:
    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.server = FaultySMTP().start()
        self.addCleanup(self.server.stop)  # type: ignore[attr-defined]

    def good(self, count: int = 5, first: int = 0) -> list[Email]:
        return [
            mail.send([f"user{i}@example.com"], SENDER, subject=f"good {i}", message="m")
            for i in range(first, first + count)
        ]

    def deliver(self, **po: Any) -> Any:
        with delivering_to(self.server, MAX_RETRIES=5, LOG_LEVEL=1, **po):
            return Worker(threads=1, batch_size=20).run()


class BadRowTestCase(BadRowMixin, TestCase):
    pass

    def assert_failed_alone(self: Any, bad: Email, good: list[Email], exception_type: str, text: str) -> None:
        bad.refresh_from_db()
        self.assertEqual((bad.status, bad.number_of_retries), (STATUS.failed, 0), "failed for good at once")
        [log] = Log.objects.filter(email_id=bad.pk)
        self.assertEqual((log.status, log.exception_type), (STATUS.failed, exception_type))
        self.assertIn(text, log.message)
        self.assertEqual(
            set(Email.objects.filter(pk__in=[e.pk for e in good]).values_list("status", flat=True)), {STATUS.sent}
        )
        self.assertEqual(sorted(self.server.counts()), sorted(e.subject for e in good))


class InvalidAddressAtDeliveryTest(BadRowTestCase):
    CASES = {
        "to": {"to": ["not an address"]},
        "cc": {"to": ["ok@example.com"], "cc": ["two@@example.com"]},
        "bcc": {"to": ["ok@example.com"], "bcc": ["Name <no-domain>"]},
        "from_email": {"to": ["ok@example.com"], "from_email": "nobody"},
    }

    def test_an_invalid_stored_address_is_a_permanent_error(self):
        for field, values in self.CASES.items():
            with self.subTest(field):
                Email.objects.all().delete()
                self.server.messages.clear()
                good = self.good()
                fields = {"from_email": SENDER, "subject": f"bad {field}", "message": "m", **values}
                # Past every check, as a bulk ORM write is (Email.objects.create() checks like mail.send).
                [bad] = Email.objects.bulk_create([Email(priority=0, **fields)])
                stats = self.deliver()
                self.assertEqual((stats.sent, stats.failed, stats.requeued), (5, 1, 0), stats.summary())
                self.assert_failed_alone(bad, good, "InvalidAddress", field)


class UnreadableRowTest(BadRowTestCase):
    """A stored value the database driver cannot turn back into Python does not take its batch down."""

    def corrupt(self, email: Email) -> str:
        """Write a value that cannot be read back into ``email``'s row; return the column."""
        table = connection.ops.quote_name(Email._meta.db_table)
        column = connection.ops.quote_name("expires_at")
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # What a far-future expiry in a time zone west of UTC used to store: psycopg cannot load year 10000.
                cursor.execute(f"UPDATE {table} SET {column} = '10000-01-01 05:00:00+00' WHERE id = %s", [email.pk])  # noqa: S608
            elif connection.vendor == "sqlite":
                # Well formed but no date (month 13): Django's converter raises ValueError.
                cursor.execute(f"UPDATE {table} SET {column} = '9999-13-01 00:00:00' WHERE id = %s", [email.pk])  # noqa: S608
            else:
                self.skipTest("MariaDB refuses such values when they are written (DATETIME stops at year 9999)")
        return "expires_at"

    def test_an_unreadable_row_fails_alone_and_the_batch_is_delivered(self):
        good = self.good(3)
        bad = mail.send(["bad@example.com"], SENDER, subject="unreadable", message="m")
        good += self.good(3, first=3)
        column = self.corrupt(bad)
        with self.assertRaises(Exception):  # noqa: B017 - the driver's own error (DataError, AttributeError...)
            Email.objects.get(pk=bad.pk)

        stats = self.deliver()
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (6, 0, 0), stats.summary())
        # The row can be read again: the unreadable value was cleared, and the Log says which and why.
        stored = Email.objects.get(pk=bad.pk)
        self.assertEqual((stored.status, stored.expires_at, stored.claimed_by), (STATUS.failed, None, ""))
        [log] = Log.objects.filter(email_id=bad.pk)
        self.assertEqual((log.status, log.exception_type), (STATUS.failed, "UnreadableRow"))
        self.assertIn(f"cleared: {column}", log.message)
        self.assertEqual(sorted(self.server.counts()), sorted(e.subject for e in good))
        # Nothing stays claimed, and the next run has nothing left to do.
        self.assertFalse(Email.objects.filter(status=STATUS.sending).exists())
        self.assertEqual(self.deliver().attempted, 0)


class SenderRefusedTest(BadRowTestCase):
    """Replies to MAIL FROM, the first stage of a message: 4xx is retried, 5xx fails for good, 421 reconnects."""

    def test_each_reply_class_at_mail_from(self):
        expected = {"451": (STATUS.requeued, 1), "421": (STATUS.requeued, 1), "550": (STATUS.failed, 0)}
        refused = {
            code: mail.send(["to@example.com"], f"from+{code}-mail@example.com", subject=f"from {code}", message="m")
            for code in expected
        }
        good = self.good(3)
        stats = self.deliver()
        self.assertEqual((stats.sent, stats.requeued, stats.failed), (3, 2, 1), stats.summary())
        for code, (status, retries) in expected.items():
            stored = Email.objects.get(pk=refused[code].pk)
            self.assertEqual((stored.status, stored.number_of_retries), (status, retries), code)
            self.assertEqual(Log.objects.get(email=stored).exception_type, "SMTPSenderRefused")
        self.assertEqual(sorted(self.server.counts()), sorted(e.subject for e in good))


class LargeBodiesTest(BadRowMixin, TransactionTestCase):
    """A claim does not load a batch of large emails at once: large bodies are read when each email is sent.

    A TransactionTestCase: the delivery thread reads the bodies on its own database connection.
    """

    def test_large_bodies_stay_in_the_database_until_sent(self):
        from post_office.delivery.claim import BODY_LIMIT, claim

        body = "x" * 80 + "\n"
        large = [
            mail.send([f"big{i}@example.com"], SENDER, subject=f"big {i}", message=body * (BODY_LIMIT // 81 + 10))
            for i in range(4)
        ]
        small = self.good(3)
        tracemalloc.start()
        try:
            _token, emails = claim("test", datetime.timedelta(seconds=60), 10)
            _size, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        deferred = {e.subject for e in emails if {"message", "html_message"} <= e.get_deferred_fields()}
        self.assertEqual(deferred, {e.subject for e in large})
        self.assertTrue(all(e.large_bodies for e in emails if e.subject in deferred))
        self.assertLess(peak, BODY_LIMIT, "the claim loaded large bodies")
        Email.objects.update(status=STATUS.queued, claimed_by="", lease_expires_at=None)

        stats = self.deliver()
        self.assertEqual(stats.sent, 7, stats.summary())
        received = {m.message["Subject"]: m.message.get_content() for m in self.server.messages}
        for email in large:
            self.assertEqual(received[email.subject].replace("\r\n", "\n"), email.message)
        self.assertEqual(sorted(received), sorted(e.subject for e in large + small))
