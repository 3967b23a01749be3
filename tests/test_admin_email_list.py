"""The Email changelist: who it went to, what it was, and finding a customer's mail (through the real views)."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth.models import User
from django.test import TestCase
from django.utils import timezone

from post_office import mail
from post_office.delivery import Worker
from post_office.maintenance import cleanup_expired_mails
from post_office.models import STATUS, DeliverySwitch, Email, EmailTemplate

LIST = "/admin/post_office/email/"


class EmailListTest(TestCase):
    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        EmailTemplate.objects.create(name="welcome", subject="Welcome {{ name }}", content="Hi")
        self.alice = mail.send(
            ["Alice Example <alice@example.com>", "bob@example.com"],
            "shop@example.com",
            subject="Your order",
            message="m",
            cc=["carol@example.com"],
        )
        self.dave = mail.send(
            ["dave@example.com"], "shop@example.com", template="welcome", context={"name": "Dave"}, language="de"
        )
        self.erin = mail.send(["erin@example.com"], "shop@example.com", subject="Invoice", message="m", bcc=["audit@x.org"])

    def found(self, **params: str) -> set[int]:
        response = self.client.get(LIST, params)
        self.assertEqual(response.status_code, 200)
        return {email.pk for email in response.context["cl"].result_list}

    def test_columns(self):
        response = self.client.get(LIST)
        row = {email.pk: email for email in response.context["cl"].result_list}
        admin = response.context["cl"].model_admin
        self.assertEqual(admin.recipients(row[self.alice.pk]), "Alice Example <alice@example.com> +2")
        self.assertEqual(admin.recipients(row[self.dave.pk]), "dave@example.com")
        self.assertEqual(admin.backend(row[self.dave.pk]), "default")
        content = response.content.decode()
        for header in ("Template", "Backend", "Scheduled", "Updated", "Priority", "Status"):
            self.assertIn(header, content)
        self.assertIn("welcome", content)

    def test_search_finds_mail_by_any_recipient_sender_subject_or_message_id(self):
        self.assertEqual(self.found(q="alice@"), {self.alice.pk})
        self.assertEqual(self.found(q="Alice Example"), {self.alice.pk})
        self.assertEqual(self.found(q="carol"), {self.alice.pk})  # cc
        self.assertEqual(self.found(q="audit@x.org"), {self.erin.pk})  # bcc
        self.assertEqual(self.found(q="invoice"), {self.erin.pk})
        self.assertEqual(self.found(q="shop@example.com"), {self.alice.pk, self.dave.pk, self.erin.pk})
        message_id = Email.objects.get(pk=self.erin.pk).message_id
        if message_id:
            self.assertEqual(self.found(q=message_id.strip("<>")), {self.erin.pk})

    def test_filters_with_blank_choices_labelled(self):
        template = EmailTemplate.objects.get(name="welcome", language="")
        self.assertEqual(self.found(template__id__exact=str(template.pk)), {self.dave.pk})
        self.assertEqual(self.found(language="de"), {self.dave.pk})
        self.assertEqual(self.found(language="-"), {self.alice.pk, self.erin.pk})
        self.assertEqual(self.found(backend_alias="default"), {self.alice.pk, self.dave.pk, self.erin.pk})
        content = self.client.get(LIST).content.decode()
        self.assertIn("default", content)

    def test_no_count_of_the_whole_table(self):
        response = self.client.get(LIST, {"q": "alice"})
        self.assertFalse(response.context["cl"].show_full_result_count)
        self.assertNotIn("total", response.content.decode().split('id="changelist"')[1].split("</form>")[0].lower())

    def test_a_banner_when_delivery_is_paused(self):
        self.assertNotIn("Delivery is paused", self.client.get(LIST).content.decode())
        DeliverySwitch.set_paused(True, "maintenance")
        self.assertIn("Delivery is paused", self.client.get(LIST).content.decode())


class RetryActionTest(TestCase):
    """"Retry selected failed emails": attempts reset, no schedule moved earlier, expired mail left alone."""

    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        now = timezone.now()
        self.future = now + datetime.timedelta(days=1)

        def make(subject: str, status: int, **fields: object) -> Email:
            email = mail.send(["to@example.com"], "from@example.com", subject=subject, message="m")
            Email.objects.filter(pk=email.pk).update(status=status, number_of_retries=3, **fields)
            return email

        self.failed = make("failed", STATUS.failed)
        self.failed_for_tomorrow = make("tomorrow", STATUS.failed, scheduled_time=self.future)
        self.failed_past_schedule = make("past", STATUS.failed, scheduled_time=now - datetime.timedelta(hours=1))
        self.expired = make("expired", STATUS.failed, expires_at=now - datetime.timedelta(minutes=1))
        self.queued_for_tomorrow = make("queued", STATUS.queued, scheduled_time=self.future)
        self.sent = make("sent", STATUS.sent)
        self.before = now

    def retry(self, *emails: Email) -> Any:
        data = {"action": "requeue", "_selected_action": [str(e.pk) for e in emails], "index": "0", "post": "yes"}
        return self.client.post(LIST, data, follow=True)

    def test_a_confirmation_page_comes_first_and_changes_nothing(self):
        data = {"action": "requeue", "_selected_action": [str(self.failed.pk), str(self.expired.pk), str(self.sent.pk)]}
        page = self.client.post(LIST, {**data, "index": "0"})
        self.assertEqual(page.status_code, 200)
        self.assertTemplateUsed(page, "admin/post_office/email/retry_confirmation.html")
        text = page.content.decode()
        self.assertIn("1 failed email will be queued again", text)
        self.assertIn("1 failed email has expired and is skipped", text)
        self.assertIn("1 selected email is not failed and is skipped", text)
        self.assertIn('name="post" value="yes"', text)
        self.failed.refresh_from_db()
        self.assertEqual(self.failed.status, STATUS.failed)

    def test_the_rules(self):
        everything = [
            self.failed,
            self.failed_for_tomorrow,
            self.failed_past_schedule,
            self.expired,
            self.queued_for_tomorrow,
            self.sent,
        ]
        response = self.retry(*everything)
        shown = [str(m) for m in response.context["messages"]]
        self.assertIn("3 failed emails will be retried.", shown)
        self.assertIn("1 email was skipped: it has expired (clear its expiry to retry it).", shown)
        self.assertIn(
            "2 emails were skipped: only failed emails are retried (they are queued, being sent or sent).", shown
        )

        def state(email: Email) -> tuple[int, int, datetime.datetime | None]:
            email.refresh_from_db()
            return email.status, email.number_of_retries, email.scheduled_time

        self.assertEqual(state(self.failed), (STATUS.queued, 0, None))
        self.assertEqual(state(self.failed_for_tomorrow), (STATUS.queued, 0, self.future), "never moved earlier")
        self.assertEqual(state(self.failed_past_schedule), (STATUS.queued, 0, None))
        self.assertEqual(state(self.expired)[:2], (STATUS.failed, 3))
        self.assertEqual(state(self.queued_for_tomorrow), (STATUS.queued, 3, self.future), "queued mail is untouched")
        self.assertEqual(state(self.sent)[:2], (STATUS.sent, 3))
        self.failed.refresh_from_db()
        self.assertGreaterEqual(self.failed.last_updated, self.before)

        # With its expiry cleared, the expired one is retried too.
        Email.objects.filter(pk=self.expired.pk).update(expires_at=None)
        self.assertIn("1 failed email will be retried.", [str(m) for m in self.retry(self.expired).context["messages"]])
        self.assertEqual(state(self.expired)[:2], (STATUS.queued, 0))

    def test_a_plain_get_changes_nothing(self):
        self.client.get(LIST, {"action": "requeue", "_selected_action": [str(self.failed.pk)]})
        self.failed.refresh_from_db()
        self.assertEqual(self.failed.status, STATUS.failed)


class CancelActionTest(TestCase):
    """Cancelled mail is never sent; restoring it puts it back in the queue as it was."""

    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        self.tomorrow = timezone.now() + datetime.timedelta(days=1)
        self.queued = mail.send(["a@example.com"], "from@example.com", subject="queued", message="m")
        self.scheduled = mail.send(
            ["b@example.com"], "from@example.com", subject="scheduled", message="m", scheduled_time=self.tomorrow
        )
        self.sent = mail.send(["c@example.com"], "from@example.com", subject="sent", message="m")
        Email.objects.filter(pk=self.sent.pk).update(status=STATUS.sent)

    def act(self, action: str, *emails: Email) -> list[str]:
        data = {"action": action, "_selected_action": [str(e.pk) for e in emails], "index": "0"}
        return [str(m) for m in self.client.post(LIST, data, follow=True).context["messages"]]

    def statuses(self) -> dict[str, int]:
        return dict(Email.objects.values_list("subject", "status"))

    def test_cancel_then_restore(self):
        shown = self.act("cancel", self.queued, self.scheduled, self.sent)
        self.assertEqual(shown, ["2 emails cancelled.", "1 email was skipped: only queued emails can be cancelled."])
        self.assertEqual(
            self.statuses(), {"queued": STATUS.cancelled, "scheduled": STATUS.cancelled, "sent": STATUS.sent}
        )
        # The engine never sends cancelled mail.
        with self.settings(POST_OFFICE={"BACKENDS": {"default": "django.core.mail.backends.locmem.EmailBackend"}}):
            self.assertEqual(Worker(threads=1).run().attempted, 0)

        shown = self.act("restore", self.queued, self.scheduled, self.sent)
        self.assertEqual(
            shown, ["2 emails restored to the queue.", "1 email was skipped: only cancelled emails can be restored."]
        )
        self.assertEqual(self.statuses(), {"queued": STATUS.queued, "scheduled": STATUS.queued, "sent": STATUS.sent})
        self.assertEqual(Email.objects.get(pk=self.scheduled.pk).scheduled_time, self.tomorrow, "schedule kept")
        with self.settings(POST_OFFICE={"BACKENDS": {"default": "django.core.mail.backends.locmem.EmailBackend"}}):
            self.assertEqual(Worker(threads=1).run().sent, 1)  # the one due now

    def test_old_cancelled_mail_is_cleaned_up(self):
        self.act("cancel", self.queued)
        Email.objects.update(created=timezone.now() - datetime.timedelta(days=100))
        deleted, _attachments = cleanup_expired_mails(timezone.now() - datetime.timedelta(days=90))
        self.assertEqual(deleted, 2)  # the cancelled one and the sent one
        self.assertEqual(set(Email.objects.values_list("subject", flat=True)), {"scheduled"})
