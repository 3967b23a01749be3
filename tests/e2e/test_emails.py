"""Support staff in a real browser: compose, watch it go out, find it by recipient, retry failed mail."""

from __future__ import annotations

import re

from post_office import mail
from post_office.choices import STATUS
from post_office.models import Email, Log

from .browser import REFUSED_DOMAIN, BrowserTestCase


class EmailListTest(BrowserTestCase):
    def test_compose_deliver_find_and_retry(self):
        for number in range(12):
            mail.send(f"customer{number}@example.com", "shop@example.com", subject=f"Order {number}", message="Hi")
        broken = mail.send("carol@example.com", "shop@example.com", subject="Your invoice", message="Attached.")
        Email.objects.filter(pk=broken.pk).update(status=STATUS.failed, number_of_retries=3)
        Log.objects.create(
            email=broken, status=STATUS.failed, exception_type="SMTPServerDisconnected", message="Connection lost"
        )
        self.login()
        self.shot("index")

        # Compose: addresses one per line, as mail.send validates them; a bad one is an error at its field.
        self.go("/admin/post_office/email/add/")
        self.page.fill("#id_to", "Dana Doe <dana@example.com>\nnot an address")
        self.page.fill("#id_subject", "Welcome aboard")
        self.page.fill("#id_message", "Hello Dana")
        self.page.click("input[name=_save]")
        self.assertIn("not an address", self.page.locator(".field-to .errorlist").inner_text())
        self.shot("compose-error")
        self.page.fill("#id_to", "Dana Doe <dana@example.com>")
        self.page.click("input[name=_save]")
        self.page.wait_for_url(re.compile(r".*/admin/post_office/email/$"))
        self.shot("list-after-compose")
        self.assertTrue(self.fits_the_screen(), "the email list is wider than 1,280 px")

        # The worker runs (as cron would): the new email turns sent.
        self.run_worker()
        self.assertIn("dana@example.com", [rcpt for m in self.sink.messages for rcpt in m.rcpt_tos])
        self.page.fill("#searchbar", "dana@example.com")
        with self.page.expect_navigation():
            self.page.press("#searchbar", "Enter")
        rows = self.page.locator("#result_list tbody tr")
        self.assertEqual(rows.count(), 1)
        self.assertIn("sent", rows.first.inner_text().lower())
        self.assertIn("Welcome aboard", rows.first.inner_text())
        self.shot("search-by-recipient")

        # Retry the failed email: a POST with a confirmation; its attempts start again.
        self.go("/admin/post_office/email/?status__exact=1")
        self.page.locator("#result_list tbody input.action-select").first.check()
        self.page.select_option("select[name=action]", "requeue")
        self.page.click("button[name=index]")
        self.assertIn("1 failed email will be queued again", self.page.inner_text("#po-retry-count"))
        self.shot("retry-confirmation")
        with self.page.expect_navigation():
            self.page.click("#confirm-requeue")
        self.assertIn("1 failed email will be retried", self.messages())
        self.shot("retried")
        broken.refresh_from_db()
        self.assertEqual((broken.status, broken.number_of_retries), (STATUS.queued, 0))
        self.run_worker()
        broken.refresh_from_db()
        self.assertEqual(broken.status, STATUS.sent)
        self.assertEqual(self.remote_requests, [])

    def test_a_refused_recipient_shows_as_failed(self):
        mail.send(f"nobody@{REFUSED_DOMAIN}", "shop@example.com", subject="Nobody", message="Hi")
        self.run_worker()
        self.login()
        self.go("/admin/post_office/email/?status__exact=1")
        self.assertIn(f"nobody@{REFUSED_DOMAIN}", self.page.locator("#result_list").inner_text())
        self.shot("failed-list")


class ViewOnlyTest(BrowserTestCase):
    def test_a_view_only_user_sees_everything_and_can_change_nothing(self):
        email = mail.send("erin@example.com", "shop@example.com", subject="Receipt", message="Thanks")
        self.login("viewer", "viewer-pw")
        self.go("/admin/post_office/email/")
        self.assertIn("erin@example.com", self.page.locator("#result_list").inner_text())
        self.assertEqual(self.page.locator("select[name=action]").count(), 0, "no actions for a view-only user")
        self.shot("viewer-list")
        self.go(f"/admin/post_office/email/{email.pk}/change/")
        self.assertEqual(self.page.locator("input[name=_save]").count(), 0)
        self.shot("viewer-email")
        # A forged POST (with a valid CSRF token) changes nothing either.
        token = next(c["value"] for c in self.context.cookies() if c["name"] == "csrftoken")
        response = self.page.request.post(
            self.url("/admin/post_office/email/"),
            form={"csrfmiddlewaretoken": token, "action": "cancel", "_selected_action": str(email.pk)},
            headers={"Referer": self.url("/admin/post_office/email/")},
        )
        self.assertIn(response.status, (200, 302, 403))
        email.refresh_from_db()
        self.assertEqual(email.status, STATUS.queued)
        response = self.page.request.post(
            self.url(f"/admin/post_office/email/{email.pk}/change/"),
            form={"csrfmiddlewaretoken": token, "to": "mallory@example.com", "subject": "x", "priority": "1"},
            headers={"Referer": self.url("/admin/post_office/email/")},
        )
        self.assertEqual(response.status, 403)
        email.refresh_from_db()
        self.assertEqual(email.to, ["erin@example.com"])
