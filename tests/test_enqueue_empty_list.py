"""mail.send while the do-not-send list is empty: a plain INSERT, remembered for DO_NOT_SEND_EMPTY_CACHE seconds.

The INSERT that checks the list also says whether the list is empty; for the
next few seconds this process inserts without the check. An entry saved in
this process takes the list as possibly not empty again at once; one added by
another process is seen by enqueue within those seconds, and delivery, which
always reads the list, never sends to it meanwhile.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

from django.core import mail as django_mail
from django.db import connection, transaction
from django.test import TransactionTestCase, override_settings
from django.test.utils import CaptureQueriesContext

from post_office import mail
from post_office.delivery import Worker
from post_office.enqueue import do_not_send
from post_office.enqueue.do_not_send import forget_empty, found_empty, known_empty, list_generation
from post_office.models import STATUS, DoNotSendEntry, Email, Log
from tests.test_enqueue_insert import django_saved, stored, varied

SENDER = "from@example.com"
ROOT = Path(__file__).resolve().parent.parent


def send(to: list[str], subject: str = "s") -> tuple[Email, list[str]]:
    """mail.send in autocommit; the email and the SQL it ran."""
    with CaptureQueriesContext(connection) as queries:
        email = mail.send(to, SENDER, subject=subject, message="m")
    return email, [q["sql"] for q in queries.captured_queries]


def checked(statements: list[str]) -> bool:
    """Whether this one statement checked the list for the email's recipients."""
    assert len(statements) == 1, statements
    assert statements[0].startswith("INSERT INTO"), statements
    return "NOT EXISTS (SELECT 1 FROM" in statements[0] and " IN (" in statements[0]


class EmptyListTest(TransactionTestCase):
    def setUp(self) -> None:
        forget_empty()
        self.addCleanup(forget_empty)

    def test_found_empty_then_plain_inserts_one_statement_each(self):
        first, statements = send(["a@example.com"])
        self.assertTrue(checked(statements))
        self.assertTrue(known_empty("default"))
        for n in range(3):
            email, statements = send([f"b{n}@example.com"])
            self.assertFalse(checked(statements), statements)
            self.assertIn(" VALUES (", statements[0])
        self.assertEqual(Email.objects.count(), 4)
        self.assertEqual(set(Email.objects.values_list("status", flat=True)), {STATUS.queued})

    def test_the_plain_row_is_the_row_save_writes(self):
        send(["a@example.com"])
        for kwargs in (varied(), varied(template=None, context={"a": 1}, subject="{{ a }}"), varied(cc=None, bcc=None)):
            with self.subTest(kwargs=kwargs):
                self.assertTrue(known_empty("default"))
                with CaptureQueriesContext(connection) as queries:
                    fast = mail.send(**kwargs)
                self.assertFalse(checked([q["sql"] for q in queries.captured_queries]))
                self.assertEqual(stored(fast), stored(django_saved(**kwargs)))

    def test_an_entry_added_in_this_process_is_checked_at_once(self):
        send(["a@example.com"])
        self.assertTrue(known_empty("default"))
        DoNotSendEntry.objects.add("Gone@example.com", reason="bounce")
        self.assertFalse(known_empty("default"))
        email, statements = send(["ann@example.com", "gone@example.com"])
        self.assertIn("NOT EXISTS", statements[0])
        self.assertEqual(Email.objects.get(pk=email.pk).to, ["ann@example.com"])
        self.assertEqual(Log.objects.filter(email=email, exception_type="DoNotSend").count(), 1)
        # The list is not empty: every send checks it from now on.
        _email, statements = send(["carl@example.com"])
        self.assertTrue(checked(statements))
        self.assertFalse(known_empty("default"))

    def test_an_entry_added_by_another_process_is_refused_by_delivery(self):
        send(["a@example.com"])
        self.assertTrue(known_empty("default"))
        self.add_in_another_process("late@example.com")
        # Enqueue has not seen it yet (it may insert for up to DO_NOT_SEND_EMPTY_CACHE seconds) ...
        email, statements = send(["ann@example.com", "late@example.com"])
        self.assertFalse(checked(statements))
        self.assertEqual(Email.objects.get(pk=email.pk).to, ["ann@example.com", "late@example.com"])
        nobody, _statements = send(["late@example.com"], subject="nobody")
        # ... and delivery, which reads the list for every batch, does not send to it.
        stats = Worker(threads=1).run()
        self.assertEqual((stats.sent, stats.failed), (2, 1))
        self.assertEqual(sorted(m.recipients() for m in django_mail.outbox), [["a@example.com"], ["ann@example.com"]])
        email.refresh_from_db()
        nobody.refresh_from_db()
        self.assertEqual((email.status, email.to), (STATUS.sent, ["ann@example.com"]))
        self.assertEqual(nobody.status, STATUS.failed)
        self.assertEqual(Log.objects.filter(email=email, exception_type="DoNotSend").count(), 1)
        self.assertEqual(Log.objects.filter(email=nobody, exception_type="NoRecipientLeft").count(), 1)

    def test_an_entry_added_by_another_process_is_checked_once_the_seconds_pass(self):
        send(["a@example.com"])
        self.add_in_another_process("late@example.com")
        later = do_not_send.time.monotonic() + 5.01
        with mock.patch.object(do_not_send.time, "monotonic", return_value=later):
            self.assertFalse(known_empty("default"))
            email, statements = send(["ann@example.com", "late@example.com"])
        self.assertIn("NOT EXISTS", statements[0])
        self.assertEqual(Email.objects.get(pk=email.pk).to, ["ann@example.com"])
        self.assertFalse(known_empty("default"))

    @override_settings(POST_OFFICE={"DO_NOT_SEND_EMPTY_CACHE": 0})
    def test_zero_checks_every_send(self):
        for n in range(3):
            _email, statements = send([f"a{n}@example.com"])
            self.assertTrue(checked(statements))
            self.assertNotIn('NOT EXISTS (SELECT 1 FROM "post_office_donotsendentry")', statements[0])
        self.assertFalse(known_empty("default"))

    def test_inside_a_transaction_it_is_remembered_on_commit_only(self):
        DoNotSendEntry.objects.add("only@example.com")
        with transaction.atomic():
            DoNotSendEntry.objects.remove("only@example.com")
            _email, statements = send(["a@example.com"])
            self.assertTrue(checked(statements))
            self.assertTrue(known_empty("default"))  # for the rest of this transaction only
            self.assertNotIn("default", do_not_send._empty_until)
            transaction.set_rollback(True)
        # The removal was rolled back: the list was never empty outside that transaction.
        self.assertFalse(known_empty("default"))
        _email, statements = send(["b@example.com"])
        self.assertTrue(checked(statements))
        self.assertFalse(known_empty("default"))
        with transaction.atomic():
            DoNotSendEntry.objects.remove("only@example.com")
            send(["c@example.com"])
            self.assertNotIn("default", do_not_send._empty_until)  # the process learns it at commit
        self.assertTrue(known_empty("default"))
        self.assertIn("default", do_not_send._empty_until)

    def test_inside_a_transaction_a_reading_serves_the_rest_of_it(self):
        with transaction.atomic():
            _email, statements = send(["a@example.com"])
            self.assertTrue(checked(statements))
            _email, statements = send(["b@example.com"])
            self.assertFalse(checked(statements))
            try:
                with transaction.atomic():
                    send(["c@example.com"])
                    raise RuntimeError("roll the savepoint back")
            except RuntimeError:
                pass
            # After a savepoint rolled back, the list is read again.
            _email, statements = send(["d@example.com"])
            self.assertTrue(checked(statements))
            DoNotSendEntry.objects.add("e@example.com")
            # An entry saved in this transaction: read at once.
            email, statements = send(["e@example.com", "f@example.com"])
            self.assertIn("NOT EXISTS", statements[0])
            self.assertEqual(email.to, ["f@example.com"])
        self.assertEqual(
            sorted(Email.objects.values_list("to", flat=True)),
            [["a@example.com"], ["b@example.com"], ["d@example.com"], ["f@example.com"]],
        )
        self.assertFalse(known_empty("default"))

    def test_a_reading_taken_before_an_entry_was_saved_is_not_remembered(self):
        generation = list_generation()
        DoNotSendEntry.objects.add("new@example.com")
        found_empty("default", 5, generation)
        self.assertFalse(known_empty("default"))
        found_empty("default", 5, list_generation())
        self.assertTrue(known_empty("default"))

    def add_in_another_process(self, address: str) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "POST_OFFICE_TEST_DB": os.environ.get("POST_OFFICE_TEST_DB", "sqlite"),
            "POST_OFFICE_DB_NAME": str(connection.settings_dict["NAME"]),
        }
        code = (
            "import django; django.setup()\n"
            "from post_office.models import DoNotSendEntry\n"
            f"DoNotSendEntry.objects.add({address!r}, reason='bounce')\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(DoNotSendEntry.objects.filter(address=address).exists())
