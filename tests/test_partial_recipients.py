"""A server that takes a message for some recipients and refuses others: nobody is silently dropped.

Real delivery over SMTP to tests.faulty_smtp capped at 100 recipients per
message (``452 4.5.3 Too many recipients`` for the rest, as large providers do),
on both writers (the fast one with and without PIPELINING, and Django's
messages for an email with an attachment).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.test import TestCase

from post_office import mail
from post_office.delivery import Worker
from post_office.models import STATUS, Email, Log
from tests.faulty_smtp import FaultySMTP
from tests.helpers import delivering_to
from tests.test_faults import make_due

SENDER = "from@example.com"
EVERYONE = [f"user{i}@example.com" for i in range(250)]


class PartialDeliveryTest(TestCase):
    pipelining = True
    attachment = False

    def setUp(self) -> None:
        self.server = FaultySMTP(max_recipients=100, pipelining=self.pipelining).start()
        self.addCleanup(self.server.stop)

    def send(self, to: list[str], cc: list[str] = (), **kwargs: Any) -> Email:  # type: ignore[assignment]
        if self.attachment:
            kwargs["attachments"] = [("notes.txt", b"attached", "text/plain")]
        return mail.send(to, SENDER, cc=list(cc), subject="to many", message="m", **kwargs)

    def deliver(self) -> Any:
        with delivering_to(self.server, MAX_RETRIES=5, LOG_LEVEL=1):
            return Worker(threads=1).run()

    def received(self) -> Counter[str]:
        return Counter(recipient for message in self.server.messages for recipient in message.rcpt_tos)

    def test_452_after_100_recipients_retries_only_the_refused_ones(self):
        email = self.send(EVERYONE[:200], cc=EVERYONE[200:])

        stats = self.deliver()
        self.assertEqual((stats.sent, stats.requeued, stats.failed), (0, 1, 0), stats.summary())
        email.refresh_from_db()
        self.assertEqual((email.status, email.number_of_retries), (STATUS.requeued, 1))
        self.assertEqual(email.pending_recipients, EVERYONE[100:])
        log = Log.objects.get(email=email)
        self.assertEqual((log.status, log.exception_type), (STATUS.failed, "PartlyRefused"))
        self.assertIn("accepted for 100 of 250 recipients", log.message)
        self.assertIn("452", log.message)

        make_due(email)
        self.deliver()
        email.refresh_from_db()
        self.assertEqual((email.status, email.pending_recipients), (STATUS.requeued, EVERYONE[200:]))

        make_due(email)
        stats = self.deliver()
        self.assertEqual(stats.sent, 1)
        email.refresh_from_db()
        self.assertEqual((email.status, email.pending_recipients), (STATUS.sent, None))

        # Every recipient got it exactly once, in three deliveries of the same message.
        self.assertEqual(self.received(), Counter(EVERYONE))
        self.assertEqual(len(self.server.messages), 3)
        headers = {(m.message["To"], m.message["Cc"]) for m in self.server.messages}
        self.assertEqual(len(headers), 1, "each delivery is the same message, to all its recipients")
        self.assertEqual(
            list(Log.objects.filter(email=email).order_by("id").values_list("exception_type", flat=True)),
            ["PartlyRefused", "PartlyRefused"],
        )

    def test_permanent_refusals_are_logged_and_not_retried(self):
        refused = "gone+550-rcpt@example.com"
        email = self.send(["a@example.com", refused, "b@example.com"])
        stats = self.deliver()
        self.assertEqual((stats.sent, stats.requeued), (1, 0), stats.summary())
        email.refresh_from_db()
        self.assertEqual(email.status, STATUS.sent)
        log = Log.objects.get(email=email)
        self.assertEqual((log.status, log.exception_type), (STATUS.sent, "PartlyRefused"))
        self.assertIn(refused, log.message)
        self.assertIn("550", log.message)
        self.assertEqual(self.received(), Counter(["a@example.com", "b@example.com"]))

    def test_refusals_left_when_retries_run_out_are_logged(self):
        email = self.send(EVERYONE[:150])
        with delivering_to(self.server, MAX_RETRIES=0, LOG_LEVEL=1):
            stats = Worker(threads=1).run()
        self.assertEqual(stats.sent, 1)
        email.refresh_from_db()
        self.assertEqual(email.status, STATUS.sent)
        log = Log.objects.get(email=email)
        self.assertEqual((log.status, log.exception_type), (STATUS.sent, "PartlyRefused"))
        self.assertIn("accepted for 100 of 150 recipients", log.message)


class PartialDeliveryWithoutPipeliningTest(PartialDeliveryTest):
    pipelining = False


class PartialDeliveryThroughDjangoMessagesTest(PartialDeliveryTest):
    """An attachment sends the email as a Django message (send_messages), which drops refusals on its own."""

    attachment = True
