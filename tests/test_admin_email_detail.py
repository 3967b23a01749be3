"""An email's page in the admin (issue 11, 1): the email as delivered, its attempts, sandboxed HTML (real views)."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.core import mail as django_mail
from django.core.files.base import ContentFile
from django.test import TestCase, override_settings
from django.urls import path, reverse
from django.utils import timezone

from post_office import mail
from post_office.admin import AttachmentAdmin, EmailAdmin, LogAdmin
from post_office.delivery import Worker
from post_office.delivery.worker import worker_name
from post_office.models import STATUS, Attachment, Email, EmailTemplate, Log
from tests.failing_backend import FailingBackend

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
HOSTILE = (
    '<html><head><link rel="stylesheet" href="https://evil.example/x.css"></head><body>'
    "<script>parent.document.title='pwned'</script>"
    '<img src="https://evil.example/pixel.gif" onerror="alert(1)">'
    '<p>Hello</p><img src="cid:logo@shop.example" alt="Logo"><img src="cid:unknown@shop.example">'
    "</body></html>"
)


def staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="post_office", codename__in=codenames))
    return user


def page(email: Email) -> str:
    return f"/admin/post_office/email/{email.pk}/change/"


def send_hostile(**extra: Any) -> Email:
    return mail.send(
        ["Alice Example <alice@example.com>"],
        "Shop <shop@example.com>",
        subject="Your order",
        message="Plain text body",
        html_message=HOSTILE,
        cc=["carol@example.com"],
        bcc=["audit@example.org"],
        headers={"Reply-To": "help@shop.example", "X-Order": "42"},
        attachments={
            "logo.png": {"file": PNG, "mimetype": "image/png", "headers": {"Content-ID": "<logo@shop.example>"}},
            "invoice.pdf": {"file": b"%PDF-1.4 invoice", "mimetype": "application/pdf"},
        },
        **extra,
    )


class SentEmailPageTest(TestCase):
    def setUp(self) -> None:
        self.admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
        self.client.force_login(self.admin)
        self.email = send_hostile()
        Worker().run()
        self.email.refresh_from_db()

    def test_the_page_shows_the_email_as_delivered(self):
        self.assertEqual(self.email.status, STATUS.sent)
        response = self.client.get(page(self.email))
        self.assertEqual(response.status_code, 200)
        content = response.content.decode()
        for expected in (
            'id="po-status"',
            ">sent<",
            "Your order",
            "Alice Example &lt;alice@example.com&gt;",
            "carol@example.com",
            "audit@example.org",
            "help@shop.example",  # Reply-To, and in the headers
            "X-Order",
            "Plain text body",
            'id="po-sent-at"',
        ):
            self.assertIn(expected, content)
        self.assertNotIn("Rendered now", content)
        # The HTML is never in the admin's own page, only in a sandboxed iframe.
        self.assertNotIn("<script>parent", content)
        self.assertIn(
            f'<iframe id="po-html-frame" class="po-html-frame" sandbox src="/admin/post_office/email/{self.email.pk}/preview/"',
            content,
        )
        self.assertNotIn("allow-scripts", content)
        self.assertNotIn("allow-same-origin", content)

    def test_attachments_with_name_type_size_and_permission_checked_links(self):
        content = self.client.get(page(self.email)).content.decode()
        invoice = Attachment.objects.get(name="invoice.pdf")
        self.assertIn(f'href="/admin/post_office/attachment/{invoice.pk}/download/"', content)
        self.assertIn("application/pdf", content)
        self.assertIn("16\xa0bytes", content)
        self.assertIn(f'href="/admin/post_office/email/{self.email.pk}/image/logo@shop.example"', content)
        self.assertNotIn(invoice.file.name, content)  # never the storage's own name or URL

    def test_a_sent_email_is_history_no_form_no_edit(self):
        response = self.client.get(page(self.email))
        self.assertNotIn('name="subject"', response.content.decode())
        self.assertFalse(response.context["has_change_permission"])
        before = Email.objects.values().get(pk=self.email.pk)
        response = self.client.post(page(self.email), {"subject": "rewritten", "to": "x@example.com"}, follow=True)
        self.assertRedirects(response, page(self.email))
        self.assertContains(response, "your changes were not saved")
        self.assertEqual(Email.objects.values().get(pk=self.email.pk), before)
        self.client.force_login(staff("viewer", "view_email"))
        self.assertEqual(self.client.post(page(self.email), {"subject": "rewritten"}).status_code, 403)
        self.assertEqual(Email.objects.values().get(pk=self.email.pk), before)

    def test_attempts_name_the_worker_that_made_them(self):
        [log] = Log.objects.filter(email=self.email)
        self.assertTrue(log.worker.startswith(worker_name() + ":"), log.worker)
        content = self.client.get(page(self.email)).content.decode()
        self.assertIn('id="po-attempts"', content)
        self.assertIn(log.worker, content)

    def test_html_view_is_sandboxed_and_shows_inline_images(self):
        response = self.client.get(reverse("admin:post_office_email_preview", args=[self.email.pk]))
        self.assertEqual(response.status_code, 200)
        policy = response["Content-Security-Policy"]
        self.assertTrue(policy.startswith("sandbox; default-src 'none'; "), policy)
        self.assertIn(f"img-src data: http://testserver/admin/post_office/email/{self.email.pk}/image/;", policy)
        self.assertIn("style-src 'unsafe-inline'", policy)
        self.assertNotIn("script-src", policy)
        self.assertEqual(response["X-Content-Type-Options"], "nosniff")
        self.assertEqual(response["X-Frame-Options"], "SAMEORIGIN")
        self.assertEqual(response["Referrer-Policy"], "no-referrer")
        html = response.content.decode()
        self.assertIn('<img src="data:image/png;base64,', html)  # cid:logo@shop.example
        self.assertIn(f'src="/admin/post_office/email/{self.email.pk}/image/unknown@shop.example"', html)
        # The remote references stay in the text; the policy keeps the browser from loading them.
        self.assertIn("https://evil.example/x.css", html)

    def test_image_view_serves_the_inline_image_of_that_email_only(self):
        url = reverse("admin:post_office_email_image", kwargs={"pk": self.email.pk, "content_id": "logo@shop.example"})
        response = self.client.get(url)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, PNG)
        self.assertEqual(response["Content-Type"], "image/png")
        self.assertEqual(response["X-Content-Type-Options"], "nosniff")
        self.assertTrue(response["Content-Security-Policy"].startswith("sandbox"))
        for content_id in ("unknown@shop.example", "invoice.pdf"):
            self.assertEqual(
                self.client.get(
                    reverse("admin:post_office_email_image", kwargs={"pk": self.email.pk, "content_id": content_id})
                ).status_code,
                404,
            )
        other = mail.send("b@example.com", "shop@example.com", subject="s", message="m")
        url = reverse("admin:post_office_email_image", kwargs={"pk": other.pk, "content_id": "logo@shop.example"})
        self.assertEqual(self.client.get(url).status_code, 404)

    def test_email_without_html_has_no_iframe(self):
        plain = mail.send("b@example.com", "shop@example.com", subject="s", message="only text")
        content = self.client.get(page(plain)).content.decode()
        self.assertNotIn("po-html-frame", content)
        self.assertEqual(self.client.get(reverse("admin:post_office_email_preview", args=[plain.pk])).status_code, 404)


class FailedEmailPageTest(TestCase):
    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))

    @override_settings(POST_OFFICE={"BACKENDS": {"default": "tests.failing_backend.FailingBackend"}, "MAX_RETRIES": 0})
    def test_failed_mail_shows_its_last_error_first_and_every_attempt(self):
        self.addCleanup(setattr, FailingBackend, "error", FailingBackend.error)
        FailingBackend.error = ValueError("the message was refused by the test")
        email = mail.send("a@example.com", "shop@example.com", subject="s", message="m")
        Worker().run()
        email.refresh_from_db()
        self.assertEqual(email.status, STATUS.failed)
        [log] = Log.objects.filter(email=email)
        self.assertTrue(log.worker.startswith(worker_name() + ":"), log.worker)
        content = self.client.get(page(email)).content.decode()
        self.assertIn('id="po-last-error"', content)
        self.assertLess(content.index('id="po-last-error"'), content.index('id="po-summary"'))
        self.assertIn("Delivery failed", content)
        self.assertIn("<strong>ValueError</strong>: the message was refused by the test", content)
        self.assertIn('data-po-initial="po-tab-attempts"', content)
        self.assertIn('id="po-resend-button"', content)

    def test_requeued_mail_shows_its_last_error_and_next_attempt(self):
        email = mail.send("a@example.com", "shop@example.com", subject="s", message="m")
        later = timezone.now() + datetime.timedelta(minutes=10)
        Email.objects.filter(pk=email.pk).update(status=STATUS.requeued, number_of_retries=1, scheduled_time=later)
        Log.objects.create(email=email, status=STATUS.failed, exception_type="SMTPServerDisconnected", message="bye")
        content = self.client.get(page(email)).content.decode()
        self.assertIn("it will be retried", content)
        self.assertIn("SMTPServerDisconnected", content)
        self.assertIn(timezone.localtime(later).strftime("%Y-%m-%d %H:%M:%S"), content)

    def test_expired_mail_names_the_worker_that_failed_it(self):
        email = mail.send("a@example.com", "shop@example.com", subject="s", message="m")
        Email.objects.filter(pk=email.pk).update(expires_at=timezone.now() - datetime.timedelta(minutes=1))
        self.assertIn("expired", self.client.get(page(email)).content.decode())
        Worker().run()
        log = Log.objects.get(email=email)
        self.assertEqual((log.exception_type, log.worker), ("Expired", worker_name()))

    def test_dispatch_outside_a_claim_names_the_worker(self):
        email = mail.send("a@example.com", "shop@example.com", subject="s", message="m")
        email.dispatch()
        self.assertEqual(Log.objects.get(email=email).worker, worker_name())


class QueuedEmailPageTest(TestCase):
    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))

    def test_next_attempt_due_now_scheduled_or_expired(self):
        now = timezone.now()
        email = mail.send("a@example.com", "shop@example.com", subject="s", message="m")
        self.assertIn("due now", self.client.get(page(email)).content.decode())
        Email.objects.filter(pk=email.pk).update(
            scheduled_time=datetime.datetime(2999, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        )
        self.assertIn("2999-01-02 03:04:05", self.client.get(page(email)).content.decode())
        Email.objects.filter(pk=email.pk).update(scheduled_time=None, expires_at=now - datetime.timedelta(hours=1))
        self.assertIn("never: it expired", self.client.get(page(email)).content.decode())

    def test_a_queued_email_keeps_its_form(self):
        email = mail.send("a@example.com", "shop@example.com", subject="s", message="m")
        response = self.client.get(page(email))
        self.assertTrue(response.context["has_change_permission"])
        content = response.content.decode()
        self.assertIn('id="po-edit"', content)
        self.assertIn('name="subject"', content)
        self.assertNotIn('id="po-resend-button"', content)  # only sent or failed mail is resent

    def test_an_email_being_sent_shows_its_claim(self):
        email = mail.send("a@example.com", "shop@example.com", subject="s", message="m")
        lease = timezone.now() + datetime.timedelta(seconds=30)
        Email.objects.filter(pk=email.pk).update(status=STATUS.sending, claimed_by="host:1:abc", lease_expires_at=lease)
        response = self.client.get(page(email))
        content = response.content.decode()
        self.assertIn("claimed by <code>host:1:abc</code>", content)
        self.assertIn("being sent now", content)
        self.assertNotIn('name="subject"', content)
        self.client.post(page(email), {"subject": "x"})
        self.assertEqual(Email.objects.get(pk=email.pk).subject, "s")


class RenderOnDeliveryPageTest(TestCase):
    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        self.template = EmailTemplate.objects.create(
            name="welcome", subject="Welcome {{ name }}", content="Hi {{ name }}", html_content="<b>Hi {{ name }}</b>"
        )

    def test_rendered_now_from_template_and_context_and_marked_so(self):
        email = mail.send(
            "a@example.com", "shop@example.com", template="welcome", context={"name": "Dave"}, render_on_delivery=True
        )
        self.assertEqual(Email.objects.get(pk=email.pk).subject, "")
        content = self.client.get(page(email)).content.decode()
        self.assertIn("Welcome Dave", content)
        self.assertIn("Hi Dave", content)
        self.assertIn('id="po-rendered-now"', content)
        self.assertIn("it is rendered again when it is sent", content)
        html = self.client.get(reverse("admin:post_office_email_preview", args=[email.pk])).content.decode()
        self.assertEqual(html, "<b>Hi Dave</b>")
        Worker().run()
        self.template.subject = "Hello again {{ name }}"
        self.template.save()
        content = self.client.get(page(email)).content.decode()
        self.assertIn("Hello again Dave", content)
        self.assertIn("the sent email may have differed", content)

    def test_a_rendering_error_is_shown_not_a_500(self):
        email = mail.send(
            "a@example.com", "shop@example.com", template="welcome", context={"name": "Dave"}, render_on_delivery=True
        )
        self.template.delete()
        response = self.client.get(page(email))
        self.assertEqual(response.status_code, 200)
        content = response.content.decode()
        self.assertIn('id="po-render-error"', content)
        self.assertIn("was deleted", content)
        self.assertEqual(self.client.get(reverse("admin:post_office_email_preview", args=[email.pk])).status_code, 404)


class PermissionsTest(TestCase):
    def setUp(self) -> None:
        self.email = send_hostile()
        Worker().run()
        self.attachment = Attachment.objects.get(name="invoice.pdf")
        self.urls = {
            "html": reverse("admin:post_office_email_preview", args=[self.email.pk]),
            "image": reverse(
                "admin:post_office_email_image", kwargs={"pk": self.email.pk, "content_id": "logo@shop.example"}
            ),
            "download": reverse("admin:post_office_attachment_download", args=[self.attachment.pk]),
        }

    def test_view_only_staff_sees_the_page_and_downloads_but_cannot_resend_or_edit(self):
        self.client.force_login(staff("viewer", "view_email"))
        response = self.client.get(page(self.email))
        self.assertEqual(response.status_code, 200)
        content = response.content.decode()
        self.assertIn("Your order", content)
        self.assertNotIn('id="po-resend-button"', content)
        self.assertNotIn('id="po-copy-to-me-button"', content)
        for label, url in self.urls.items():
            with self.subTest(label):
                self.assertEqual(self.client.get(url).status_code, 200)
        queued = mail.send("b@example.com", "shop@example.com", subject="s", message="m")
        content = self.client.get(page(queued)).content.decode()
        self.assertNotIn('name="subject"', content)
        self.assertNotIn('id="po-edit"', content)

    def test_staff_without_the_view_permission_gets_403(self):
        self.client.force_login(staff("nobody"))
        for label, url in {**self.urls, "page": page(self.email)}.items():
            with self.subTest(label):
                self.assertEqual(self.client.get(url).status_code, 403)

    def test_anonymous_users_are_sent_to_the_login_page(self):
        for label, url in self.urls.items():
            with self.subTest(label):
                response = self.client.get(url)
                self.assertEqual(response.status_code, 302)
                self.assertIn("/login/", response["Location"])


class DjangoPostOfficeUrlNamesTest(TestCase):
    """django-post_office 3.12's admin URL names and arguments resolve to our views."""

    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))

    def test_each_name(self):
        email = send_hostile()
        Worker().run()
        urls = {
            "preview by args": reverse("admin:post_office_email_preview", args=[email.pk]),
            "preview by kwargs": reverse("admin:post_office_email_preview", kwargs={"pk": email.pk}),
            "image": reverse(
                "admin:post_office_email_image", kwargs={"pk": email.pk, "content_id": "logo@shop.example"}
            ),
            "resend (a GET only shows the confirmation)": reverse("admin:resend", args=[email.pk]),
            "resend by kwargs": reverse("admin:resend", kwargs={"pk": email.pk}),
        }
        for label, url in urls.items():
            with self.subTest(label):
                self.assertEqual(self.client.get(url).status_code, 200)
        self.assertEqual(Email.objects.count(), 1)  # no GET resent anything
        self.assertEqual(len(django_mail.outbox), 1)

    def test_image_by_the_32_characters_django_post_office_puts_in_its_urls(self):
        # {% inline_image %} Content-IDs are <32 hex>@inline.post-office; django-post_office links the 32 hex.
        digest = "0123456789abcdef" * 2
        email = mail.send("a@example.com", "shop@example.com", subject="s", message="m", html_message="x")
        attachment = Attachment.objects.create(
            name="x.png", mimetype="image/png", headers={"Content-ID": f"<{digest}@inline.post-office>"}
        )
        attachment.file.save("x.png", ContentFile(PNG), save=True)
        attachment.emails.add(email)
        url = reverse("admin:post_office_email_image", kwargs={"pk": email.pk, "content_id": digest})
        self.assertEqual(url, f"/admin/post_office/email/{email.pk}/image/{digest}")
        response = self.client.get(url)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, PNG)


# A custom AdminSite, served by this module as a URLconf.
site = admin.AdminSite(name="backoffice")
site.register(Email, EmailAdmin)
site.register(Attachment, AttachmentAdmin)
site.register(Log, LogAdmin)
urlpatterns = [path("backoffice/", site.urls)]


@override_settings(ROOT_URLCONF="tests.test_admin_email_detail")
class CustomAdminSiteTest(TestCase):
    def test_page_views_and_links_use_the_sites_own_urls(self):
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        email = send_hostile()
        Worker().run()
        response = self.client.get(f"/backoffice/post_office/email/{email.pk}/change/")
        self.assertEqual(response.status_code, 200)
        content = response.content.decode()
        self.assertIn(f'src="/backoffice/post_office/email/{email.pk}/preview/"', content)
        self.assertIn(f'href="/backoffice/post_office/email/{email.pk}/resend/"', content)
        self.assertIn('href="/backoffice/post_office/attachment/', content)
        self.assertNotIn("/admin/", content.split('id="po-detail"')[1])
        self.assertEqual(
            reverse("backoffice:post_office_email_preview", args=[email.pk]),
            f"/backoffice/post_office/email/{email.pk}/preview/",
        )
        preview = self.client.get(f"/backoffice/post_office/email/{email.pk}/preview/")
        self.assertIn(
            f"http://testserver/backoffice/post_office/email/{email.pk}/image/", preview["Content-Security-Policy"]
        )
        resend = self.client.get(f"/backoffice/post_office/email/{email.pk}/resend/")
        self.assertEqual(resend.status_code, 200)
        response = self.client.post(f"/backoffice/post_office/email/{email.pk}/resend/", {"recipients": ""})
        copy = Email.objects.exclude(pk=email.pk).get()
        self.assertRedirects(response, f"/backoffice/post_office/email/{copy.pk}/change/")
