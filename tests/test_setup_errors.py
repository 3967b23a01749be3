"""A connection or credentials that fail are not the emails' fault: they stay queued, and it is said once, safely.

Real delivery over SMTP to tests.faulty_smtp, which can require a login
(530 before AUTH, 535 for wrong credentials).
"""

from __future__ import annotations

import logging
import smtplib
from typing import Any

import pytest
from django.test import SimpleTestCase, TestCase, override_settings

from post_office import mail
from post_office.conf import mail_passwords
from post_office.delivery import Worker
from post_office.delivery.record import OUTAGES
from post_office.models import STATUS, Email, Log
from post_office.transport.failures import ConnectionFailed, PartlyRefused, is_setup_error, setup_text
from tests.faulty_smtp import FaultySMTP, free_port
from tests.helpers import DJANGO_61, QUEUE, SMTP, delivering_to
from tests.test_faults import PoisonBackend

SENDER = "from@example.com"
PASSWORD = "s3cr\u00e9t-p\u00e4ss"  # not ASCII: smtplib cannot send it
GOOD = ("mailer", "correct horse")


class CapturedLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self, level: int = logging.DEBUG) -> str:
        return "\n".join(r.getMessage() for r in self.records if r.levelno >= level)

    def errors(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.ERROR]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
class SetupErrorTest(TestCase):
    def setUp(self) -> None:
        self.server = FaultySMTP(credentials=GOOD).start()
        self.addCleanup(self.server.stop)
        self.logs = CapturedLogs()
        logger = logging.getLogger("post_office")
        logger.addHandler(self.logs)
        self.addCleanup(logger.removeHandler, self.logs)
        OUTAGES.aliases.clear()
        self.addCleanup(OUTAGES.aliases.clear)

    def queue(self, count: int = 20) -> list[Email]:
        return [mail.send([f"user{i}@example.com"], SENDER, subject=f"mail {i}", message="m") for i in range(count)]

    def assert_all_held(self, emails: list[Email], stats: Any, reason: str) -> None:
        """Nothing sent, nothing failed or counted as an attempt, no Log row: the emails wait in the queue."""
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (0, 0, 0), stats.summary())
        self.assertGreaterEqual(stats.held, 1)
        self.assertEqual(list(stats.blocked), ["default"])
        self.assertIn(reason, stats.blocked["default"])
        rows = Email.objects.filter(pk__in=[e.pk for e in emails])
        self.assertEqual(
            set(rows.values_list("status", "number_of_retries", "claimed_by")), {(STATUS.queued, 0, "")}, reason
        )
        self.assertFalse(Log.objects.exists())
        self.assertEqual(self.server.messages, [])
        # Said once, loudly, however many emails and threads ran into it.
        [error] = self.logs.errors()
        self.assertIn("Delivery through 'default' stopped", error)
        self.assertIn(reason, error)

    def assert_no_secret(self) -> None:
        everything = self.logs.text() + "".join(Log.objects.values_list("message", flat=True))
        for part in (PASSWORD, GOOD[1], "\u00e9", "\\xe9", "position"):
            self.assertNotIn(part, everything)

    def deliver_all_once_fixed(self, emails: list[Email]) -> None:
        with delivering_to(self.server, credentials=GOOD):
            stats = Worker(threads=4).run()
        self.assertEqual((stats.sent, stats.held), (len(emails), 0), stats.summary())
        self.assertEqual(sorted(self.server.counts().values()), [1] * len(emails))
        self.assertEqual(Log.objects.filter(status=STATUS.failed).count(), 0)
        self.assertIn("Delivery through 'default' works again", self.logs.text())

    def test_wrong_password_535_keeps_the_queue(self):
        emails = self.queue()
        with delivering_to(self.server, credentials=(GOOD[0], "wrong password")):
            stats = Worker(threads=4).run()
        self.assert_all_held(emails, stats, "SMTPAuthenticationError")
        self.assertIn("535", stats.blocked["default"])
        # One login per connection the threads opened before the first failure was known, not one per email
        # (smtplib tries each mechanism the server offers: PLAIN and LOGIN).
        self.assertLessEqual(len(self.server.logins), 4 * 2)
        self.assert_no_secret()
        self.deliver_all_once_fixed(emails)

    def test_no_credentials_530_keeps_the_queue(self):
        emails = self.queue()
        with delivering_to(self.server):
            stats = Worker(threads=4, batch_size=5).run()
        self.assert_all_held(emails, stats, "530")
        self.deliver_all_once_fixed(emails)

    def test_non_ascii_password_keeps_the_queue_and_never_shows_a_character_of_it(self):
        emails = self.queue()
        with delivering_to(self.server, credentials=(GOOD[0], PASSWORD)):
            stats = Worker(threads=2).run()
        self.assert_all_held(emails, stats, "UnicodeEncodeError")
        self.assertIn("details withheld", stats.blocked["default"])
        self.assert_no_secret()
        self.deliver_all_once_fixed(emails)

    def test_refused_connection_keeps_the_queue(self):
        self.queue(5)
        nobody = FaultySMTP(port=free_port())  # never started: nothing listens there
        with delivering_to(nobody):
            stats = Worker(threads=2).run()
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (0, 0, 0))
        self.assertIn("ConnectionRefusedError", stats.blocked["default"])
        self.assertEqual(set(Email.objects.values_list("status", "number_of_retries")), {(STATUS.queued, 0)})
        self.assertFalse(Log.objects.exists())
        self.assertEqual(len(self.logs.errors()), 1)

    def test_the_same_outage_is_logged_once_across_runs(self):
        self.queue(3)
        with delivering_to(self.server, credentials=(GOOD[0], "wrong")):
            for _ in range(3):
                Worker(threads=1).run()
        self.assertEqual(len(self.logs.errors()), 1, self.logs.errors())

    def test_other_aliases_are_still_delivered(self):
        PoisonBackend.error, PoisonBackend.fail_in_open = OSError("no route to host"), True
        self.addCleanup(setattr, PoisonBackend, "fail_in_open", False)
        self.addCleanup(setattr, PoisonBackend, "error", PoisonBackend.error)
        backends = {"default": "smtp" if DJANGO_61 else SMTP, "broken": "tests.test_faults.PoisonBackend"}
        with delivering_to(self.server, credentials=GOOD, BACKENDS=backends):
            broken = [
                mail.send(["b@example.com"], SENDER, subject=f"b{i}", priority="high", backend="broken")
                for i in range(30)
            ]
            good = self.queue(10)
            stats = Worker(threads=2, batch_size=4).run()
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (10, 0, 0), stats.summary())
        self.assertEqual(list(stats.blocked), ["broken"])
        self.assertEqual({e.status for e in Email.objects.filter(pk__in=[e.pk for e in good])}, {STATUS.sent})
        # The broken alias was tried for the first emails only, then left alone for the rest of the pass.
        self.assertEqual(
            set(Email.objects.filter(pk__in=[e.pk for e in broken]).values_list("status", "number_of_retries")),
            {(STATUS.queued, 0)},
        )
        self.assertLessEqual(stats.held, 2 * 4)


class SetupErrorRulesTest(SimpleTestCase):
    def test_which_errors_are_setup_errors(self):
        setup = [
            ConnectionFailed("default", ConnectionRefusedError(111, "refused")),
            smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"),
            smtplib.SMTPSenderRefused(530, b"5.7.0 Authentication required", "a@example.com"),
            smtplib.SMTPResponseException(538, b"5.7.11 Encryption required"),
            smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server."),
        ]
        message = [
            smtplib.SMTPSenderRefused(550, b"5.1.0 sender rejected", "a@example.com"),
            smtplib.SMTPRecipientsRefused({"a@example.com": (530, b"no")}),
            smtplib.SMTPDataError(554, b"spam"),
            ConnectionRefusedError(111, "refused while sending"),
            PartlyRefused({"a@example.com": (452, b"too many")}, accepted=1),
        ]
        self.assertEqual([is_setup_error(e) for e in setup], [True] * len(setup))
        self.assertEqual([is_setup_error(e) for e in message], [False] * len(message))

    def test_configured_passwords_are_cut_out(self):
        if DJANGO_61:
            configured = override_settings(
                MAILERS={"default": {"BACKEND": QUEUE}, "smtp": {"BACKEND": SMTP, "OPTIONS": {"password": "hunter2"}}}
            )
        else:
            configured = override_settings(EMAIL_HOST_PASSWORD="hunter2")
        with configured:
            self.check_cut_out()

    def check_cut_out(self) -> None:
        error = RuntimeError("login as bob with hunter2 failed; also tried extra-secret")
        text = ConnectionFailed("default", error, mail_passwords("extra-secret")).args[0]
        self.assertEqual(text, "RuntimeError: login as bob with [secret] failed; also tried [secret]")
        self.assertEqual(
            setup_text(error, mail_passwords()), "RuntimeError: login as bob with [secret] failed; also tried extra-secret"
        )

    def test_unicode_errors_say_nothing_of_the_text(self):
        try:
            PASSWORD.encode("ascii")
        except UnicodeEncodeError as error:
            text = setup_text(error)
        self.assertNotIn("\u00e9", text)
        self.assertNotIn("position", text)
        self.assertTrue(text.startswith("UnicodeEncodeError: "))
