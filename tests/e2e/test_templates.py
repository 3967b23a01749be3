"""A marketer in a real browser: a template with a German translation, previews in both languages, a test send."""

from __future__ import annotations

import re

from post_office.choices import STATUS
from post_office.models import Email, EmailTemplate

from .browser import BrowserTestCase


class TemplateTest(BrowserTestCase):
    def test_create_translate_preview_and_send_a_test(self):
        self.login()
        self.go("/admin/post_office/emailtemplate/add/")
        self.page.fill("#id_name", "order_shipped")
        self.page.fill("#id_subject", "Order {{ order }} shipped")
        # The code editor keeps a real textarea underneath: filling it is typing into the editor.
        self.page.fill("#id_content", "Hello {{ customer.name }},\nyour order {{ order }} is on its way.")
        self.page.fill("#id_html_content", "<p>Hello <b>{{ customer.name }}</b></p>")
        self.shot("template-add")
        self.page.click("text=Add another translation")
        self.page.select_option("#id_translated_templates-0-language", "de")
        self.page.fill("#id_translated_templates-0-subject", "Bestellung {{ order }} versandt")
        self.page.fill(
            "#id_translated_templates-0-content", "Hallo {{ customer.name }},\nIhre Bestellung ist unterwegs."
        )
        self.page.click("input[name=_continue]")
        self.page.wait_for_url(re.compile(r".*/emailtemplate/\d+/change/$"))
        self.shot("template-saved")
        template = EmailTemplate.objects.get(name="order_shipped", language="")
        self.assertEqual(template.translated_templates.get().language, "de")

        # Preview: the sample context is pre-filled from the variables the template uses.
        context = self.page.input_value("#po-preview-context")
        self.assertIn("customer", context)
        self.assertIn("order", context)
        self.page.fill("#po-preview-context", '{"customer": {"name": "Anna"}, "order": "A-17"}')
        self.page.select_option("#po-preview-language", "")
        self.page.click("#po-preview-button")
        self.page.wait_for_selector("#po-preview-subject")
        self.assertEqual(self.page.inner_text("#po-preview-subject").strip(), "Order A-17 shipped")
        frame = self.page.frame_locator("#po-preview-html")
        self.assertIn("Hello Anna", frame.locator("body").inner_text())
        self.shot("preview-base")
        self.page.select_option("#po-preview-language", "de")
        self.page.click("#po-preview-button")
        self.page.wait_for_function(
            "document.querySelector('#po-preview-subject') && "
            "document.querySelector('#po-preview-subject').textContent.includes('Bestellung')"
        )
        self.assertIn("Hallo Anna", self.page.inner_text("#po-preview-text"))
        # The German translation has no HTML while the base has: the preview says so.
        self.assertTrue(self.page.locator("#po-preview-warnings").inner_text().strip())
        self.shot("preview-german")

        # Send a test to an address the staff member types: queued with priority now, then what happened.
        self.page.click("#po-send-test-link")
        self.page.fill("#po-test-to", "marketing@example.com")
        self.page.select_option("#po-test-language", "de")
        self.page.fill("#po-test-context", '{"customer": {"name": "Test"}, "order": "T-1"}')
        self.shot("send-test-form")
        self.page.click("#po-send-test-button")
        self.page.wait_for_selector("#po-test-result")
        self.shot("send-test-result")
        # Priority now: delivered over SMTP as the admin's transaction committed, before the result page.
        self.assertEqual(self.page.get_attribute("#po-test-result", "data-outcome"), "sent")
        email = Email.objects.get(to=["marketing@example.com"])
        self.assertEqual((email.status, email.subject), (STATUS.sent, "Bestellung T-1 versandt"))
        arrived = [m.message for m in self.sink.messages if "marketing@example.com" in m.rcpt_tos]
        self.assertEqual([str(m["Subject"]) for m in arrived], ["Bestellung T-1 versandt"])
        self.page.click("#po-test-email-link")
        self.page.wait_for_selector("#po-summary")
        self.shot("test-email-detail")

        # Versions: edit the subject, see the old one in the history with a diff, restore it.
        self.go(f"/admin/post_office/emailtemplate/{template.pk}/change/")
        self.page.fill("#id_subject", "Order {{ order }} is on its way")
        self.page.click("input[name=_continue]")
        self.page.click("#po-versions-link")
        self.shot("versions")
        self.page.locator("a.po-version-link").first.click()
        self.shot("version-diff")
        self.assertIn("shipped", self.page.locator("body").inner_text())
        self.page.click("#po-restore-button")
        template.refresh_from_db()
        self.assertEqual(template.subject, "Order {{ order }} shipped")
        self.shot("restored")
        self.assertEqual(self.remote_requests, [])

    def test_a_syntax_error_is_shown_at_its_field_with_its_line(self):
        self.login()
        self.go("/admin/post_office/emailtemplate/add/")
        self.page.fill("#id_name", "broken")
        self.page.fill("#id_content", "line one\n{% if %}")
        self.page.click("input[name=_save]")
        self.assertIn("2", self.page.locator(".field-content .errorlist").inner_text())
        self.shot("syntax-error")
        self.assertFalse(EmailTemplate.objects.filter(name="broken").exists())

    def test_a_view_only_user_sees_a_template_and_its_history_but_changes_nothing(self):
        template = EmailTemplate.objects.create(name="welcome", subject="Hi {{ name }}", content="Hello {{ name }}")
        template.subject = "Hello {{ name }}"
        template.save()
        self.login("viewer", "viewer-pw")
        self.go(f"/admin/post_office/emailtemplate/{template.pk}/change/")
        self.assertEqual(self.page.locator("input[name=_save]").count(), 0)
        self.assertEqual(self.page.locator("#po-send-test-link").count(), 0)
        self.shot("viewer-template")
        self.page.click("#po-versions-link")
        self.page.locator("a.po-version-link").first.click()
        self.assertEqual(self.page.locator("#po-restore-button").count(), 0)
        self.shot("viewer-version")
        token = next(c["value"] for c in self.context.cookies() if c["name"] == "csrftoken")
        response = self.page.request.post(
            self.url(f"/admin/post_office/emailtemplate/{template.pk}/send-test/"),
            form={"csrfmiddlewaretoken": token, "to": "viewer@example.com"},
            headers={"Referer": self.url("/admin/")},
        )
        self.assertEqual(response.status, 403)
        self.assertFalse(Email.objects.exists())
