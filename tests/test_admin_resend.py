"""Resend in the admin (issue 11, 2): a new queued copy of a sent or failed email, after a confirmation (real views)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission, User
from django.core import mail as django_mail
from django.test import Client, TestCase, override_settings

from post_office import mail
from post_office.choices import PRIORITY, STATUS
from post_office.delivery import Worker
from post_office.models import Attachment, Email, EmailTemplate, Log
from post_office.signals import email_queued

CHANGELIST = "/admin/post_office/email/"


def resend_url(email: Email) -> str:
    return f"/admin/post_office/email/{email.pk}/resend/"


def page(email: Email) -> str:
    return f"/admin/post_office/email/{email.pk}/change/"


def staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="post_office", codename__in=codenames))
    return user


def sent_email(**extra: Any) -> Email:
    options: dict[str, Any] = {
        "subject": "Your invoice",
        "message": "Text",
        "html_message": "<p>HTML</p>",
        "cc": ["carol@example.com"],
        "bcc": ["audit@example.org"],
        "headers": {"Reply-To": "help@shop.example", "X-Order": "42", "Message-ID": "<original@shop.example>"},
        "attachments": {"invoice.pdf": {"file": b"%PDF-1.4", "mimetype": "application/pdf"}},
        "priority": "high",
    }
    options.update(extra)
    email = mail.send(["Alice <alice@example.com>"], "shop@example.com", **options)
    Worker().run()
    email.refresh_from_db()
    return email


@override_settings(POST_OFFICE={**settings.POST_OFFICE, "MESSAGE_ID_ENABLED": True, "MESSAGE_ID_FQDN": "shop.example"})
class ResendOneTest(TestCase):
    def setUp(self) -> None:
        self.user = User.objects.create_superuser("admin", "me@staff.example", "pw")
        self.client.force_login(self.user)
        self.original = sent_email()
        self.before = Email.objects.values().get(pk=self.original.pk)
        django_mail.outbox.clear()

    def assertOriginalUntouched(self) -> None:
        self.assertEqual(Email.objects.values().get(pk=self.original.pk), self.before)
        self.assertEqual(Log.objects.filter(email=self.original).count(), 1)

    def copy(self) -> Email:
        return Email.objects.exclude(pk=self.original.pk).get()

    def test_the_page_has_the_buttons_and_a_get_only_shows_the_confirmation(self):
        content = self.client.get(page(self.original)).content.decode()
        self.assertIn(f'href="{resend_url(self.original)}" id="po-resend-button"', content)
        self.assertIn(f'href="{resend_url(self.original)}?to=me" id="po-copy-to-me-button"', content)
        response = self.client.get(resend_url(self.original))
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, 'id="po-resend-submit"')
        self.assertContains(response, "csrfmiddlewaretoken")
        self.assertEqual(Email.objects.count(), 1)
        self.assertOriginalUntouched()

    def test_send_a_copy_to_me_prefills_my_address(self):
        response = self.client.get(resend_url(self.original), {"to": "me"})
        self.assertEqual(response.context["form"]["recipients"].value(), "me@staff.example")
        self.assertEqual(self.client.get(resend_url(self.original)).context["form"]["recipients"].value(), "")

    def test_blank_recipients_copy_everything_to_the_original_recipients(self):
        queued: list[list[Email]] = []

        def receiver(sender: Any, emails: list[Email], **kwargs: Any) -> None:
            queued.append(emails)

        email_queued.connect(receiver)
        self.addCleanup(email_queued.disconnect, receiver)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(resend_url(self.original), {"recipients": ""})
        copy = self.copy()
        self.assertRedirects(response, page(copy), fetch_redirect_response=False)
        self.assertContains(self.client.get(page(copy)), f"queued as email #{copy.pk}")
        self.assertEqual(copy.status, STATUS.queued)
        self.assertEqual(copy.to, self.original.to)
        self.assertEqual((copy.cc, copy.bcc), (self.original.cc, self.original.bcc))
        for name in ("from_email", "subject", "message", "html_message", "alternatives", "priority", "backend_alias"):
            self.assertEqual(getattr(copy, name), getattr(self.original, name), name)
        self.assertEqual(copy.headers, {"Reply-To": "help@shop.example", "X-Order": "42"})
        self.assertTrue(copy.message_id and copy.message_id.endswith("@shop.example>"), copy.message_id)
        self.assertNotEqual(copy.message_id, self.original.message_id)
        self.assertEqual(list(copy.attachments.all()), list(self.original.attachments.all()))  # the same rows
        self.assertEqual(Attachment.objects.count(), 1)
        self.assertEqual(copy.number_of_retries, 0)
        self.assertFalse(copy.logs.exists())
        self.assertEqual([[email.pk for email in emails] for emails in queued], [[copy.pk]])
        self.assertOriginalUntouched()
        Worker().run()
        [message] = django_mail.outbox
        self.assertEqual(message.subject, "Your invoice")
        self.assertEqual(message.to, ["Alice <alice@example.com>"])
        self.assertEqual(message.attachments[0][0], "invoice.pdf")
        self.assertEqual(message.extra_headers["Message-ID"], copy.message_id)

    def test_to_another_address_only(self):
        response = self.client.post(resend_url(self.original), {"recipients": "Me Myself <me@staff.example>\n"})
        copy = self.copy()
        self.assertRedirects(response, page(copy), fetch_redirect_response=False)
        self.assertEqual((copy.to, copy.cc, copy.bcc), (["Me Myself <me@staff.example>"], [], []))
        self.assertOriginalUntouched()

    def test_an_invalid_address_is_a_form_error_and_nothing_is_queued(self):
        response = self.client.post(resend_url(self.original), {"recipients": "bob@"})
        self.assertEqual(response.status_code, 200)
        self.assertIn("bob@", str(response.context["form"].errors["recipients"]))
        self.assertEqual(Email.objects.count(), 1)

    def test_a_failed_email_is_resent_too(self):
        Email.objects.filter(pk=self.original.pk).update(status=STATUS.failed)
        self.before["status"] = STATUS.failed
        self.client.post(resend_url(self.original), {"recipients": ""})
        self.assertEqual(self.copy().status, STATUS.queued)
        self.assertEqual(Email.objects.get(pk=self.original.pk).status, STATUS.failed)

    def test_queued_mail_is_not_resent(self):
        queued = mail.send("x@example.com", "shop@example.com", subject="s", message="m")
        response = self.client.get(resend_url(queued))
        self.assertContains(response, 'id="po-resend-refused"')
        self.assertNotContains(response, 'id="po-resend-submit"')
        self.client.post(resend_url(queued), {"recipients": ""})
        self.assertEqual(Email.objects.count(), 2)

    def test_the_post_needs_the_csrf_token(self):
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.user)
        self.assertEqual(client.post(resend_url(self.original), {"recipients": ""}).status_code, 403)
        self.assertEqual(Email.objects.count(), 1)

    def test_priority_now_is_delivered_when_the_copy_commits(self):
        Email.objects.filter(pk=self.original.pk).update(priority=PRIORITY.now)
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(resend_url(self.original), {"recipients": "me@staff.example"})
        self.assertEqual(self.copy().status, STATUS.sent)
        self.assertEqual([message.to for message in django_mail.outbox], [["me@staff.example"]])


class ResendRenderOnDeliveryTest(TestCase):
    def test_the_copy_stays_render_on_delivery(self):
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        EmailTemplate.objects.create(name="welcome", subject="Welcome {{ name }}", content="Hi {{ name }}")
        original = mail.send(
            "a@example.com",
            "shop@example.com",
            template="welcome",
            context={"name": "Dave"},
            render_on_delivery=True,
            language="",
            backend="",
        )
        Worker().run()
        self.client.post(resend_url(original), {"recipients": ""})
        copy = Email.objects.exclude(pk=original.pk).get()
        self.assertEqual((copy.subject, copy.message), ("", ""))
        self.assertEqual(copy.context, {"name": "Dave"})
        self.assertEqual(copy.template_id, original.template_id)
        self.assertEqual((copy.language, copy.template_language), (original.language, original.template_language))
        Worker().run()
        self.assertEqual([m.subject for m in django_mail.outbox], ["Welcome Dave", "Welcome Dave"])


class ResendPermissionsTest(TestCase):
    def setUp(self) -> None:
        self.original = sent_email()

    def test_view_only_staff_gets_no_button_and_403(self):
        self.client.force_login(staff("viewer", "view_email"))
        self.assertNotContains(self.client.get(page(self.original)), "po-resend-button")
        self.assertEqual(self.client.get(resend_url(self.original)).status_code, 403)
        self.assertEqual(self.client.post(resend_url(self.original), {"recipients": ""}).status_code, 403)
        response = self.client.post(
            CHANGELIST, {"action": "resend_emails", ACTION_CHECKBOX_NAME: [self.original.pk], "post": "yes"}
        )
        self.assertIn(response.status_code, (200, 302))
        self.assertEqual(Email.objects.count(), 1)

    def test_staff_without_permission_gets_403(self):
        self.client.force_login(staff("nobody"))
        self.assertEqual(self.client.get(resend_url(self.original)).status_code, 403)
        self.assertEqual(self.client.post(resend_url(self.original), {"recipients": ""}).status_code, 403)
        self.assertEqual(Email.objects.count(), 1)

    def test_staff_who_may_change_emails_resends(self):
        self.client.force_login(staff("editor", "view_email", "change_email"))
        self.assertContains(self.client.get(page(self.original)), 'id="po-resend-button"')
        self.client.post(resend_url(self.original), {"recipients": ""})
        self.assertEqual(Email.objects.count(), 2)


class ResendSelectedTest(TestCase):
    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        self.sent = sent_email()
        self.failed = sent_email(subject="Failed one")
        Email.objects.filter(pk=self.failed.pk).update(status=STATUS.failed)
        self.queued = mail.send("q@example.com", "shop@example.com", subject="Queued", message="m")
        self.selected = [self.sent.pk, self.failed.pk, self.queued.pk]

    def test_a_confirmation_page_first_then_copies_of_sent_and_failed_mail(self):
        response = self.client.post(CHANGELIST, {"action": "resend_emails", ACTION_CHECKBOX_NAME: self.selected})
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, 'id="po-resend-selected-submit"')
        self.assertContains(response, "Failed one")
        self.assertContains(response, "1 selected email is not resent")
        self.assertEqual(Email.objects.count(), 3)  # nothing yet
        response = self.client.post(
            CHANGELIST, {"action": "resend_emails", ACTION_CHECKBOX_NAME: self.selected, "post": "yes"}, follow=True
        )
        self.assertContains(response, "Copies of 2 emails were queued.")
        self.assertContains(response, "1 email was skipped: only sent or failed emails are resent.")
        copies = Email.objects.exclude(pk__in=self.selected)
        self.assertEqual(sorted(copies.values_list("subject", flat=True)), ["Failed one", "Your invoice"])
        self.assertTrue(all(copy.status == STATUS.queued for copy in copies))
        self.assertEqual(Email.objects.get(pk=self.failed.pk).status, STATUS.failed)

    def test_the_action_is_not_run_by_a_get(self):
        self.client.get(CHANGELIST, {"action": "resend_emails", ACTION_CHECKBOX_NAME: self.selected, "post": "yes"})
        self.assertEqual(Email.objects.count(), 3)
