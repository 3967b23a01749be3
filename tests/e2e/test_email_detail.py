"""An email as the recipient saw it, in a real browser: sandboxed HTML, resend, the delivery health page."""

from __future__ import annotations

import re

from post_office import mail
from post_office.choices import STATUS
from post_office.models import DeliverySwitch, Email

from .browser import BrowserTestCase

HOSTILE_HTML = """<html><head>
<link rel="stylesheet" href="https://evil.example.net/steal.css">
<script>console.log("SCRIPT RAN"); document.title = "pwned";
  try { window.top.document.body.setAttribute("data-pwned", "1"); } catch (e) {}</script>
</head><body>
<p id="greeting">Hello from the shop</p>
<img src="https://evil.example.net/pixel.gif" alt="tracker">
<img src="x" onerror="console.log('ONERROR RAN'); document.body.setAttribute('data-onerror', '1')">
<a href="javascript:alert(1)">click</a>
</body></html>"""


class EmailDetailTest(BrowserTestCase):
    def test_hostile_html_runs_nothing_and_loads_nothing_remote(self):
        email = mail.send(
            "victim@example.com", "shop@example.com", subject="Hostile", message="Plain", html_message=HOSTILE_HTML
        )
        self.login()
        self.go(f"/admin/post_office/email/{email.pk}/change/")
        frame_element = self.page.locator("#po-html-frame")
        frame_element.wait_for()
        sandbox = frame_element.get_attribute("sandbox")
        self.assertIsNotNone(sandbox)
        self.assertNotIn("allow-scripts", sandbox or "")
        frame = self.page.frame_locator("#po-html-frame")
        self.assertIn("Hello from the shop", frame.locator("#greeting").inner_text())
        self.page.wait_for_timeout(1000)  # time for anything that would run or load
        self.shot("hostile-html")
        self.assertEqual(self.remote_requests, [], "a request left for the remote host")
        self.assertFalse([line for line in self.console if "RAN" in line], self.console)
        self.assertIsNone(self.page.get_attribute("body", "data-pwned"))
        self.assertNotEqual(self.page.title(), "pwned")
        # The HTML view itself is served with a sandbox policy.
        src = frame_element.get_attribute("src")
        if src:
            response = self.page.request.get(self.url(src) if src.startswith("/") else src)
            self.assertIn("sandbox", response.headers.get("content-security-policy", ""))

    def test_open_a_sent_email_and_resend_it_to_me(self):
        email = mail.send("frank@example.com", "shop@example.com", subject="Your receipt", message="Thanks, Frank")
        self.run_worker()
        email.refresh_from_db()
        self.assertEqual(email.status, STATUS.sent)
        self.login()
        self.go("/admin/post_office/email/")
        self.page.fill("#searchbar", "frank@")
        with self.page.expect_navigation():
            self.page.press("#searchbar", "Enter")
        self.page.click("#result_list tbody tr th a")
        self.page.wait_for_selector("#po-summary")
        self.assertIn("Your receipt", self.page.inner_text("#po-subject"))
        self.page.click("#po-tab-text-button")
        self.assertIn("Thanks, Frank", self.page.inner_text("#po-text"))
        self.page.click("#po-tab-attempts-button")
        self.assertIn("sent", self.page.inner_text("#po-attempts").lower())
        self.shot("sent-email")
        # A sent email is read-only: no Save button.
        self.assertEqual(self.page.locator("input[name=_save]").count(), 0)

        self.page.click("#po-copy-to-me-button")
        self.page.wait_for_selector("#po-resend-form")
        self.shot("resend-confirmation")
        self.page.click("#po-resend-submit")
        self.page.wait_for_url(re.compile(r".*/email/\d+/change/$"))
        self.shot("resent")
        copy = Email.objects.exclude(pk=email.pk).get()
        self.assertEqual((copy.to, copy.status, copy.subject), (["admin@example.com"], STATUS.queued, "Your receipt"))
        email.refresh_from_db()
        self.assertEqual((email.status, email.to), (STATUS.sent, ["frank@example.com"]), "the original stays")
        self.run_worker()
        self.assertIn("admin@example.com", [rcpt for message in self.sink.messages for rcpt in message.rcpt_tos])

    def test_failed_mail_shows_its_error_first(self):
        email = mail.send("nobody@nowhere.example.com", "shop@example.com", subject="Bounce", message="Hi")
        self.run_worker()
        email.refresh_from_db()
        self.assertEqual(email.status, STATUS.failed)
        self.login()
        self.go(f"/admin/post_office/email/{email.pk}/change/")
        self.assertIn("No such mailbox", self.page.inner_text("#po-last-error"))
        self.shot("failed-email")


class HealthTest(BrowserTestCase):
    def test_an_operator_watches_delivery_and_pauses_it(self):
        for number in range(5):
            mail.send(f"user{number}@example.com", "shop@example.com", subject="Hi", message="Hi")
        mail.send("nobody@nowhere.example.com", "shop@example.com", subject="Bounce", message="Hi")
        self.run_worker()
        self.login()
        self.go("/admin/post_office/email/")
        self.page.click("#delivery-health-link")
        self.page.wait_for_selector("#delivery-health")
        self.assertTrue(self.page.locator("#health-chart-svg").is_visible())
        self.assertIn("send_queued_mail", self.page.inner_text("#health-workers-table"))
        self.assertIn("SMTPRecipientsRefused", self.page.inner_text("#health-errors-table"))
        self.shot("health")
        self.page.fill("#id_reason", "Provider maintenance")
        self.page.click("#health-pause")
        self.page.wait_for_selector("#health-paused")
        self.assertTrue(DeliverySwitch.is_paused())
        self.shot("health-paused")
        self.page.click("#health-resume")
        self.page.wait_for_selector("#health-running")
        self.assertFalse(DeliverySwitch.is_paused())
        self.assertEqual(self.remote_requests, [])

    def test_a_view_only_user_sees_health_but_cannot_pause(self):
        self.login("viewer", "viewer-pw")
        self.go("/admin/")
        self.shot("viewer-index")
        self.page.click("text=Delivery health")
        self.page.wait_for_selector("#delivery-health")
        self.assertEqual(self.page.locator("#health-pause").count(), 0)
        self.shot("viewer-health")
