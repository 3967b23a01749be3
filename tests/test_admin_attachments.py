"""The admin (issue 10): attachments only through a permission-checked download; view-only staff change nothing."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission, User
from django.test import TestCase
from django.urls import reverse

from post_office import mail
from post_office.choices import STATUS
from post_office.models import Attachment, Email, get_attachment_storage

CHANGELIST = "/admin/post_office/email/"
PAGE = b"<html><script>alert('from an attachment')</script></html>"


def staff(username: str, *codenames: str, is_staff: bool = True) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=is_staff)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="post_office", codename__in=codenames))
    return user


class AttachmentDownloadTest(TestCase):
    def setUp(self) -> None:
        self.email = mail.send(
            "to@example.com",
            "from@example.com",
            message="m",
            attachments={"page.html": {"file": PAGE, "mimetype": "text/html"}, "r\u00e9sum\u00e9.pdf": b"%PDF"},
        )
        self.attachment = self.email.attachments.get(name="page.html")
        self.url = reverse("admin:post_office_attachment_download", args=[self.attachment.pk])

    def download(self, user: User | None, url: str | None = None) -> Any:
        if user is not None:
            self.client.force_login(user)
        return self.client.get(url or self.url)

    def assertServed(self, response: Any, content: bytes = PAGE) -> None:
        self.assertEqual(response.status_code, 200)
        self.assertEqual(b"".join(response.streaming_content), content)
        self.assertEqual(response["Content-Type"], "application/octet-stream")  # never rendered as HTML
        self.assertTrue(response["Content-Disposition"].startswith("attachment;"), response["Content-Disposition"])
        self.assertEqual(response["X-Content-Type-Options"], "nosniff")

    def test_staff_who_may_view_attachments_or_emails_download(self):
        users = {
            "superuser": User.objects.create_superuser("admin", "admin@example.com", "pw"),
            "view attachments": staff("viewer", "view_attachment"),
            "view emails": staff("reader", "view_email"),
            "change emails": staff("editor", "change_email"),
        }
        for label, user in users.items():
            with self.subTest(label):
                response = self.download(user)
                self.assertServed(response)
                self.assertIn('filename="page.html"', response["Content-Disposition"])
        other = self.email.attachments.get(name="r\u00e9sum\u00e9.pdf")
        response = self.download(users["superuser"], reverse("admin:post_office_attachment_download", args=[other.pk]))
        self.assertServed(response, b"%PDF")
        self.assertIn("filename*=utf-8''r%C3%A9sum%C3%A9.pdf", response["Content-Disposition"])

    def test_everyone_else_is_refused(self):
        self.assertEqual(self.download(staff("nobody")).status_code, 403)
        self.assertEqual(self.download(staff("logs", "view_log", "view_emailtemplate")).status_code, 403)
        self.client.logout()
        for label, user in {"anonymous": None, "not staff": staff("user", "view_attachment", is_staff=False)}.items():
            with self.subTest(label):
                response = self.download(user)
                self.assertEqual(response.status_code, 302)
                self.assertIn("/admin/login/", response["Location"])

    def test_unknown_or_missing_is_not_found(self):
        admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
        url = reverse("admin:post_office_attachment_download", args=[999999])
        self.assertEqual(self.download(admin, url).status_code, 404)
        self.assertEqual(self.download(admin, "/admin/post_office/attachment/nonsense/download/").status_code, 404)
        get_attachment_storage().delete(self.attachment.file.name)
        self.assertEqual(self.download(admin).status_code, 404)

    def test_pages_link_to_the_download_never_to_the_storage(self):
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        storage_url = self.attachment.file.url
        pages = {
            "attachment list": "/admin/post_office/attachment/",
            "attachment page": f"/admin/post_office/attachment/{self.attachment.pk}/change/",
            "email page": f"/admin/post_office/email/{self.email.pk}/change/",
        }
        for label, url in pages.items():
            with self.subTest(label):
                page = self.client.get(url).content.decode()
                self.assertIn(f'href="{self.url}"', page)
                self.assertNotIn(storage_url, page)
                self.assertNotIn(self.attachment.file.name, page)

    def test_files_are_not_uploaded_through_the_admin(self):
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
        self.assertEqual(self.client.get("/admin/post_office/attachment/add/").status_code, 403)


class ViewOnlyActionsTest(TestCase):
    def setUp(self) -> None:
        self.failed = mail.send("to@example.com", "from@example.com", subject="failed", message="m")
        Email.objects.filter(pk=self.failed.pk).update(status=STATUS.failed, number_of_retries=3)

    def post_requeue(self) -> Any:
        return self.client.post(
            CHANGELIST, {"action": "requeue", "_selected_action": [str(self.failed.pk)], "index": "0", "post": "yes"}
        )

    def test_a_view_only_user_sees_no_action_and_cannot_forge_one(self):
        self.client.force_login(staff("viewer", "view_email"))
        page = self.client.get(CHANGELIST)
        self.assertEqual(page.status_code, 200)
        self.assertFalse(b'value="requeue"' in page.content, "the requeue action is offered")
        self.post_requeue()
        self.failed.refresh_from_db()
        self.assertEqual((self.failed.status, self.failed.number_of_retries), (STATUS.failed, 3))

    def test_a_user_who_may_change_mail_requeues(self):
        self.client.force_login(staff("editor", "view_email", "change_email"))
        self.assertTrue(b'value="requeue"' in self.client.get(CHANGELIST).content, "no requeue action")
        self.post_requeue()
        self.failed.refresh_from_db()
        self.assertEqual((self.failed.status, self.failed.number_of_retries), (STATUS.queued, 0))
        self.assertEqual(Attachment.objects.count(), 0)
