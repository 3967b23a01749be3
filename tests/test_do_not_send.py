"""The do-not-send list: kept normalised, enforced on every enqueue path and again at delivery.

A listed recipient is taken off the email with a Log row naming it; an email
left with nobody is stored failed (never delivered, never "sent"), with a
NoRecipientLeft Log row. Delivery checks again, so an address listed after
the email was queued is skipped too, on both ways of writing a message.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core import mail as django_mail
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from post_office import mail
from post_office.delivery import Worker
from post_office.exceptions import InvalidAddress, InvalidArgument, NoRecipientLeft
from post_office.models import STATUS, DoNotSendEntry, Email, Log, do_not_send_key
from post_office.signals import email_failed, email_queued
from tests.helpers import delivering_to, queueing
from tests.smtp_sink import SMTPSink
from tests.test_faults import make_due

SENDER = "from@example.com"


def listed(*addresses: str, reason: str = "manual") -> None:
    for address in addresses:
        DoNotSendEntry.objects.add(address, reason=reason)


def skipped(email: Email) -> list[tuple[str, str]]:
    """The email's Log rows about the list: (exception type, message), oldest first."""
    return list(
        Log.objects.filter(email=email, exception_type__in=["DoNotSend", "NoRecipientLeft"])
        .order_by("id")
        .values_list("exception_type", "message")
    )


class ListTest(TestCase):
    """The model and its small API: one entry per address, whatever its case or display name."""

    def test_key_is_the_bare_address_in_lower_case(self):
        self.assertEqual(do_not_send_key('"Doe, Bob" <Bob@Example.COM>'), "bob@example.com")
        self.assertEqual(do_not_send_key(" BOB@example.com "), "bob@example.com")
        self.assertEqual(do_not_send_key("anna@Bücher.de"), "anna@xn--bcher-kva.de")

    def test_add_normalises_and_keeps_the_first_entry(self):
        entry, created = DoNotSendEntry.objects.add("Bob <BOB@Example.com>", reason="bounce", note="550 5.1.1")
        self.assertTrue(created)
        self.assertEqual((entry.address, entry.reason, entry.note), ("bob@example.com", "bounce", "550 5.1.1"))
        again, created = DoNotSendEntry.objects.add("bob@example.COM", reason="complaint")
        self.assertFalse(created)
        self.assertEqual((again.pk, again.reason), (entry.pk, "bounce"))
        self.assertEqual(DoNotSendEntry.objects.count(), 1)

    def test_add_refuses_a_bad_address_or_reason(self):
        with self.assertRaises(InvalidAddress) as raised:
            DoNotSendEntry.objects.add("bob@")
        self.assertIn("'bob@'", str(raised.exception))
        with self.assertRaises(InvalidArgument) as raised:
            DoNotSendEntry.objects.add("bob@example.com", reason="spite")
        self.assertIn("manual, django-mailer, bounce, complaint, unsubscribe", str(raised.exception))
        self.assertFalse(DoNotSendEntry.objects.exists())

    def test_every_save_path_normalises(self):
        DoNotSendEntry.objects.create(address="A@Example.com")
        DoNotSendEntry(address="<B@Example.com>").save()
        DoNotSendEntry.objects.bulk_create([DoNotSendEntry(address="C@EXAMPLE.com")])
        self.assertEqual(
            sorted(DoNotSendEntry.objects.values_list("address", flat=True)),
            ["a@example.com", "b@example.com", "c@example.com"],
        )

    def test_listed_and_remove(self):
        listed("a@example.com", "b@example.com")
        DoNotSendEntry.objects.add("c@example.com", reason="unsubscribe")
        found = DoNotSendEntry.objects.listed(["A@example.com", "x@example.com", "Cee <C@example.com>"])
        self.assertEqual(found, {"a@example.com": "manual", "c@example.com": "unsubscribe"})
        self.assertTrue(DoNotSendEntry.objects.remove("B@EXAMPLE.com"))
        self.assertFalse(DoNotSendEntry.objects.remove("b@example.com"))
        self.assertEqual(DoNotSendEntry.objects.count(), 2)

    def test_listed_in_chunks(self):
        DoNotSendEntry.objects.bulk_create(DoNotSendEntry(address=f"u{i}@example.com") for i in range(1200))
        with CaptureQueriesContext(connection) as queries:
            found = DoNotSendEntry.objects.listed(f"U{i}@example.com" for i in range(0, 2400, 2))
        self.assertEqual(len(found), 600)
        self.assertEqual(len(queries), 3)  # 1,200 distinct addresses, 500 per query

    def test_clean_says_what_is_wrong(self):
        entry = DoNotSendEntry(address="not an address")
        with self.assertRaises(ValidationError) as raised:
            entry.full_clean()
        self.assertEqual(
            raised.exception.message_dict["address"],
            ["'not an address' is not a valid email address (e.g. bob@example.com)."],
        )


class EnqueueTest(TestCase):
    """send, send_many, the backend and the helpers all take listed recipients off, in one query per call."""

    def setUp(self) -> None:
        listed("blocked@example.com", "other@example.com")

    def test_send_removes_listed_recipients_and_logs_each(self):
        email = mail.send(
            ["ok@example.com", '"Blocked, B." <BLOCKED@example.com>'],
            SENDER,
            cc=["other@example.com"],
            bcc=["hidden@example.com"],
            subject="s",
            message="m",
        )
        email.refresh_from_db()
        self.assertEqual((email.to, email.cc, email.bcc), (["ok@example.com"], [], ["hidden@example.com"]))
        self.assertEqual(email.status, STATUS.queued)
        self.assertEqual(
            skipped(email),
            [
                (
                    "DoNotSend",
                    '"Blocked, B." <BLOCKED@example.com> is on the do-not-send list (reason: manual); '
                    "not sent to this recipient",
                ),
                (
                    "DoNotSend",
                    "other@example.com is on the do-not-send list (reason: manual); not sent to this recipient",
                ),
            ],
        )
        self.assertEqual(mail.send_queued(), (1, 0, 0))
        self.assertEqual(
            [sorted(m.recipients()) for m in django_mail.outbox], [["hidden@example.com", "ok@example.com"]]
        )

    def test_nobody_left_is_failed_not_sent(self):
        queued: list[Any] = []
        email_queued.connect(lambda sender, emails, **kw: queued.extend(emails), weak=False, dispatch_uid="dns-test")
        self.addCleanup(email_queued.disconnect, dispatch_uid="dns-test")
        with self.captureOnCommitCallbacks(execute=True):
            email = mail.send(["Blocked@example.com"], SENDER, cc=["other@example.com"], subject="s", priority="now")
        email.refresh_from_db()
        self.assertEqual(email.status, STATUS.failed)
        # It keeps its recipients, so the admin shows who it was for.
        self.assertEqual((email.to, email.cc), (["Blocked@example.com"], ["other@example.com"]))
        self.assertEqual([kind for kind, _text in skipped(email)], ["DoNotSend", "DoNotSend", "NoRecipientLeft"])
        self.assertEqual(
            skipped(email)[-1][1],
            "every recipient is on the do-not-send list (Blocked@example.com, other@example.com); the email is not sent",
        )
        self.assertEqual(queued, [], "email_queued is not sent for an email that is not queued")
        self.assertEqual(mail.send_queued(), (0, 0, 0))
        self.assertEqual(django_mail.outbox, [])
        self.assertEqual(Email.objects.get(pk=email.pk).status, STATUS.failed)

    def test_one_query_per_call(self):
        def queries(run: Any) -> list[str]:
            with CaptureQueriesContext(connection) as captured, transaction.atomic():
                run()
                transaction.set_rollback(True)
            return [q["sql"] for q in captured.captured_queries if "donotsend" in q["sql"].lower()]

        self.assertEqual(len(queries(lambda: mail.send(["a@example.com"], SENDER, subject="s"))), 1)
        many = [{"recipients": [f"u{i}@example.com"], "cc": ["c@example.com"], "sender": SENDER} for i in range(50)]
        self.assertEqual(len(queries(lambda: mail.send_many(many))), 1)

    def test_send_many_mixes_queued_and_failed(self):
        emails = mail.send_many(
            [
                {"recipients": ["blocked@example.com"], "sender": SENDER, "subject": "nobody"},
                {"recipients": ["a@example.com", "other@example.com"], "sender": SENDER, "subject": "one left"},
                {"recipients": ["b@example.com"], "sender": SENDER, "subject": "untouched"},
            ]
        )
        states = {e.subject: (e.status, e.to) for e in Email.objects.filter(pk__in=[e.pk for e in emails])}
        self.assertEqual(
            states,
            {
                "nobody": (STATUS.failed, ["blocked@example.com"]),
                "one left": (STATUS.queued, ["a@example.com"]),
                "untouched": (STATUS.queued, ["b@example.com"]),
            },
        )
        self.assertEqual(Log.objects.filter(exception_type="DoNotSend").count(), 2)
        self.assertEqual(Log.objects.filter(exception_type="NoRecipientLeft").count(), 1)
        self.assertEqual(mail.send_queued(), (2, 0, 0))

    def test_backend_and_helpers(self):
        from django.core.mail import EmailMessage

        with queueing():
            EmailMessage("backend", "m", SENDER, ["blocked@example.com", "a@example.com"]).send()
            mail.send_mail("helper", "m", SENDER, ["OTHER@example.com", "b@example.com"])
            mail.send_html_mail("html", "m", "<p>m</p>", SENDER, ["blocked@example.com"])
            mail.send_mass_mail([("mass", "m", SENDER, ["other@example.com", "c@example.com"])])
        with override_settings(ADMINS=[("Blocked", "blocked@example.com"), ("Ok", "admin@example.com")]):
            mail.mail_admins("admins", "m")
        states = dict(Email.objects.values_list("subject", "status"))
        recipients = dict(Email.objects.values_list("subject", "to"))
        self.assertEqual(states.pop("html"), STATUS.failed)
        self.assertEqual(set(states.values()), {STATUS.queued})
        self.assertEqual(recipients["backend"], ["a@example.com"])
        self.assertEqual(recipients["helper"], ["b@example.com"])
        self.assertEqual(recipients["mass"], ["c@example.com"])
        self.assertEqual(recipients["[Django] admins"], ["admin@example.com"])
        self.assertEqual(Log.objects.filter(exception_type="DoNotSend").count(), 5)

    def test_rollback_keeps_nothing(self):
        with transaction.atomic():
            mail.send(["blocked@example.com"], SENDER, subject="s")
            transaction.set_rollback(True)
        self.assertFalse(Email.objects.exists())
        self.assertFalse(Log.objects.exists())


class DeliveryTest(TestCase):
    """An address listed after enqueueing is skipped when the email is sent."""

    def queue(self, to: list[str], **kwargs: Any) -> Email:
        return mail.send(to, SENDER, subject=kwargs.pop("subject", "s"), message="m", **kwargs)

    def test_listed_after_enqueue_is_skipped(self):
        email = self.queue(["a@example.com", "late@example.com"], bcc=["Late2@example.com"])
        DoNotSendEntry.objects.add("LATE@example.com", reason="bounce")
        DoNotSendEntry.objects.add("late2@example.com", reason="unsubscribe")
        stats = Worker(threads=1).run()
        self.assertEqual((stats.sent, stats.failed), (1, 0))
        self.assertEqual([m.recipients() for m in django_mail.outbox], [["a@example.com"]])
        email.refresh_from_db()
        self.assertEqual((email.status, email.to, email.bcc), (STATUS.sent, ["a@example.com"], []))
        self.assertEqual(
            skipped(email),
            [
                (
                    "DoNotSend",
                    "late@example.com is on the do-not-send list (reason: bounce); not sent to this recipient",
                ),
                (
                    "DoNotSend",
                    "Late2@example.com is on the do-not-send list (reason: unsubscribe); not sent to this recipient",
                ),
            ],
        )
        self.assertTrue(all(log.worker for log in Log.objects.filter(email=email)))

    def test_nobody_left_fails_for_good_with_the_signal(self):
        failures: list[tuple[Any, bool]] = []

        def on_failed(sender: Any, email: Email, exception: BaseException, will_retry: bool, **kw: Any) -> None:
            failures.append((exception, will_retry))

        email_failed.connect(on_failed, weak=False, dispatch_uid="dns-failed")
        self.addCleanup(email_failed.disconnect, dispatch_uid="dns-failed")
        email = self.queue(["late@example.com"], cc=["late2@example.com"])
        other = self.queue(["fine@example.com"])
        listed("late@example.com", "late2@example.com")
        stats = Worker(threads=2).run()
        self.assertEqual((stats.sent, stats.failed, stats.requeued), (1, 1, 0))
        email.refresh_from_db()
        self.assertEqual(
            (email.status, email.to, email.cc), (STATUS.failed, ["late@example.com"], ["late2@example.com"])
        )
        self.assertEqual([kind for kind, _ in skipped(email)], ["DoNotSend", "DoNotSend", "NoRecipientLeft"])
        self.assertEqual(Email.objects.get(pk=other.pk).status, STATUS.sent)
        self.assertEqual([m.to for m in django_mail.outbox], [["fine@example.com"]])
        self.assertEqual(len(failures), 1)
        self.assertIsInstance(failures[0][0], NoRecipientLeft)
        self.assertFalse(failures[0][1])
        # Taken off the list, a retried email goes out.
        DoNotSendEntry.objects.all().delete()
        Email.objects.filter(pk=email.pk).update(status=STATUS.queued)
        self.assertEqual(Worker().run().sent, 1)

    def test_priority_now_and_dispatch(self):
        with self.captureOnCommitCallbacks(execute=True):
            email = self.queue(["now@example.com", "x@example.com"], priority="now")
            DoNotSendEntry.objects.add("x@example.com")  # listed in the same transaction, after the insert
        email.refresh_from_db()
        self.assertEqual((email.status, email.to), (STATUS.sent, ["now@example.com"]))
        self.assertEqual([m.to for m in django_mail.outbox], [["now@example.com"]])

        other = self.queue(["y@example.com"])
        listed("y@example.com")
        self.assertEqual(other.dispatch(), STATUS.failed)
        self.assertEqual([kind for kind, _ in skipped(other)], ["DoNotSend", "NoRecipientLeft"])
        self.assertEqual(len(django_mail.outbox), 1)

    def test_after_a_partial_delivery_only_pending_recipients_count(self):
        email = self.queue(["a@example.com", "b@example.com", "c@example.com"])
        # The server took a@ on a first attempt; b@ and c@ are still to deliver to.
        Email.objects.filter(pk=email.pk).update(
            status=STATUS.requeued, pending_recipients=["b@example.com", "c@example.com"]
        )
        make_due(email)
        listed("a@example.com", "b@example.com")  # a@ already has it: nothing to skip for a@
        Worker().run()
        email.refresh_from_db()
        self.assertEqual(email.status, STATUS.sent)
        self.assertEqual([m.recipients() for m in django_mail.outbox], [["c@example.com"]])
        self.assertEqual(email.to, ["a@example.com", "b@example.com", "c@example.com"])
        self.assertEqual(
            [text.split(" ")[0] for kind, text in skipped(email)],
            ["b@example.com"],
            "only a pending recipient is skipped",
        )

    def test_pending_recipients_all_listed_fails(self):
        email = self.queue(["a@example.com", "b@example.com"])
        Email.objects.filter(pk=email.pk).update(status=STATUS.requeued, pending_recipients=["b@example.com"])
        make_due(email)
        listed("b@example.com")
        self.assertEqual(Worker().run().failed, 1)
        self.assertEqual(django_mail.outbox, [])


class DeliveryOverSMTPTest(TestCase):
    """Both ways of writing a message leave a listed recipient out of the envelope, and out of the headers."""

    def setUp(self) -> None:
        self.sink = SMTPSink().start()
        self.addCleanup(self.sink.stop)

    def test_wire_and_django_message(self):
        plain = mail.send(["a@example.com"], SENDER, cc=["late@example.com"], subject="plain", message="m")
        attached = mail.send(
            ["late@example.com", "b@example.com"],
            SENDER,
            subject="attached",
            message="m",
            attachments={"notes.txt": b"n"},
        )
        listed("late@example.com")
        with delivering_to(self.sink):
            self.assertEqual(Worker().run().sent, 2)
        received = {m.message["Subject"]: m for m in self.sink.messages}
        self.assertEqual(received["plain"].rcpt_tos, ["a@example.com"])
        self.assertIsNone(received["plain"].message["Cc"])
        self.assertEqual(received["attached"].rcpt_tos, ["b@example.com"])
        self.assertEqual(received["attached"].message["To"], "b@example.com")
        for email in (plain, attached):
            self.assertEqual([kind for kind, _ in skipped(email)], ["DoNotSend"])


class AdminTest(TestCase):
    """The list in the admin: add with a checked address, search, filter by reason; in German too."""

    def setUp(self) -> None:
        self.user = User.objects.create_superuser("admin", "admin@example.com", "pw")
        self.client.force_login(self.user)

    def test_add_validates_and_normalises(self):
        url = reverse("admin:post_office_donotsendentry_add")
        response = self.client.post(
            url, {"address": "bob@", "reason": "manual", "note": "", "created_0": "2026-01-01", "created_1": "10:00:00"}
        )
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "&#x27;bob@&#x27; is not a valid email address (e.g. bob@example.com).")
        response = self.client.post(
            url,
            {
                "address": "Bob <Bob@Example.com>",
                "reason": "bounce",
                "note": "hard bounce",
                "created_0": "2026-01-01",
                "created_1": "10:00:00",
            },
        )
        self.assertEqual(response.status_code, 302, response.content[:2000])
        self.assertEqual(DoNotSendEntry.objects.get().address, "bob@example.com")
        response = self.client.post(
            url,
            {
                "address": "BOB@example.com",
                "reason": "manual",
                "note": "",
                "created_0": "2026-01-01",
                "created_1": "10:00:00",
            },
        )
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "already exists")
        self.assertEqual(DoNotSendEntry.objects.count(), 1)

    def test_list_search_and_filter(self):
        listed("bounced@example.com", reason="bounce")
        listed("manual@example.com")
        url = reverse("admin:post_office_donotsendentry_changelist")
        response = self.client.get(url, {"q": "BOUNCED@"})
        self.assertContains(response, "bounced@example.com")
        self.assertNotContains(response, "manual@example.com")
        response = self.client.get(url, {"reason__exact": "manual"})
        self.assertContains(response, "manual@example.com")
        self.assertNotContains(response, "bounced@example.com")

    def test_german(self):
        listed("bounced@example.com", reason="bounce")
        with translation.override("de"):
            response = self.client.get(
                reverse("admin:post_office_donotsendentry_changelist"), headers={"accept-language": "de"}
            )
        self.assertContains(response, "Sperrliste")
        self.assertContains(response, "unzustellbar")
