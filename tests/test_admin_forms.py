"""The admin's Email add/change form checks every value with the rules mail.send applies (through the real views)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import User
from django.test import TestCase

from post_office.choices import PRIORITY, STATUS
from post_office.models import Email, EmailTemplate

ADD = "/admin/post_office/email/add/"


class EmailFormTest(TestCase):
    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))

    def post(self, url: str = ADD, **fields: Any) -> Any:
        data = {
            "from_email": "sender@example.com",
            "to": "alice@example.com",
            "cc": "",
            "bcc": "",
            "subject": "Hello",
            "message": "Body",
            "html_message": "",
            "alternatives": "[]",
            "status": str(STATUS.queued),
            "priority": str(PRIORITY.medium),
            "number_of_retries": "0",
            "headers": "null",
            "context": "null",
            "language": "",
            "backend_alias": "",
            # The Log inline's management form.
            "logs-TOTAL_FORMS": "0",
            "logs-INITIAL_FORMS": "0",
            "logs-MIN_NUM_FORMS": "0",
            "logs-MAX_NUM_FORMS": "1000",
        }
        data.update(fields)
        return self.client.post(url, data)

    def errors(self, response: Any) -> dict[str, list[str]]:
        self.assertEqual(response.status_code, 200, "the form was accepted")
        return {name: list(errors) for name, errors in response.context["adminform"].form.errors.items()}

    def test_a_single_address_is_one_address_not_one_per_character(self):
        response = self.post(to='Alice Doe <alice@example.com>\n"Doe, Bob" <bob@example.com>')
        self.assertEqual(response.status_code, 302)
        email = Email.objects.get()
        self.assertEqual(email.to, ["Alice Doe <alice@example.com>", '"Doe, Bob" <bob@example.com>'])
        # The change form shows them one per line again.
        page = self.client.get(f"/admin/post_office/email/{email.pk}/change/").content.decode()
        self.assertIn("Alice Doe &lt;alice@example.com&gt;\n&quot;Doe, Bob&quot; &lt;bob@example.com&gt;", page)

    def test_bad_values_are_form_errors_and_nothing_is_stored(self):
        cases = {
            "to": {"to": "not an address"},
            "cc": {"cc": "a@example.com, b@example.com"},
            "from_email": {"from_email": "Evil\x0bX: 1 <sender@example.com>"},
            "subject": {"subject": "Hi\u2028Bcc: victim@example.com"},
            "headers": {"headers": json.dumps({"X-Bad\r\nBcc": "victim@example.com"})},
            "context": {"context": json.dumps(["not", "a", "dict"])},
            "alternatives": {"alternatives": json.dumps([["<x/>"]])},
        }
        for field, fields in cases.items():
            with self.subTest(field):
                errors = self.errors(self.post(**fields))
                self.assertIn(field, errors)
        self.assertEqual(Email.objects.count(), 0)

    def test_a_header_name_with_a_line_break_never_becomes_a_bcc_line(self):
        errors = self.errors(self.post(headers=json.dumps({"X-A\nBcc": "victim@example.com"})))
        self.assertIn("line break", " ".join(errors["headers"]))
        self.assertFalse(Email.objects.exists())

    def test_an_email_needs_a_recipient(self):
        errors = self.errors(self.post(to=""))
        self.assertIn("to", errors)

    def test_a_time_that_overflows_in_utc_is_a_form_error(self):
        from django.test import override_settings

        with override_settings(TIME_ZONE="America/New_York"):
            errors = self.errors(self.post(expires_at_0="9999-12-31", expires_at_1="23:00:00"))
        self.assertIn("years 1 to 9999", " ".join(errors["expires_at"]))
        self.assertFalse(Email.objects.exists())


TEMPLATE_ADD = "/admin/post_office/emailtemplate/add/"


class TemplateTranslationFormTest(TestCase):
    """Translations are edited inline on their template's page: errors land on fields, never a 500."""

    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))

    def post(self, url: str, translations: list[dict[str, str]], initial: int = 0, **fields: str) -> Any:
        data = {"name": "welcome", "description": "", "subject": "Hi", "content": "Hello", "html_content": ""}
        data.update(fields)
        data.update({"translated_templates-TOTAL_FORMS": str(len(translations))})
        data.update({"translated_templates-INITIAL_FORMS": str(initial)})
        for index, translation in enumerate(translations):
            for key, value in translation.items():
                data[f"translated_templates-{index}-{key}"] = value
        return self.client.post(url, data)

    def test_a_template_and_its_translation_are_added_together(self):
        german = {"language": "de", "subject": "Hallo", "content": "Hallo {{ name }}", "html_content": ""}
        response = self.post(TEMPLATE_ADD, [german])
        self.assertEqual(response.status_code, 302, response.content[:2000])
        template = EmailTemplate.objects.get(name="welcome", language="")
        self.assertEqual(
            list(template.translated_templates.values_list("name", "language", "subject")), [("welcome", "de", "Hallo")]
        )

    def test_a_translation_is_added_on_the_change_page(self):
        template = EmailTemplate.objects.create(name="welcome", subject="Hi", content="Hello")
        url = f"/admin/post_office/emailtemplate/{template.pk}/change/"
        response = self.post(url, [{"language": "fr", "subject": "Salut", "content": "Bonjour", "html_content": ""}])
        self.assertEqual(response.status_code, 302, response.content[:2000])
        self.assertEqual(template.translated_templates.get().name, "welcome")

    def test_errors_in_a_translation_show_on_its_fields(self):
        bad = {"language": "de", "subject": "{% if %}", "content": "Hallo", "html_content": ""}
        response = self.post(TEMPLATE_ADD, [bad])
        self.assertEqual(response.status_code, 200)
        errors = response.context["inline_admin_formsets"][0].formset.errors[0]
        self.assertIn("subject", errors)
        self.assertFalse(EmailTemplate.objects.exists())

    def test_a_bad_template_name_is_a_form_error_with_a_translation_too(self):
        german = {"language": "de", "subject": "Hallo", "content": "Hallo", "html_content": ""}
        response = self.post(TEMPLATE_ADD, [german], name="../escape")
        self.assertEqual(response.status_code, 200)
        self.assertIn("name", response.context["adminform"].form.errors)
        self.assertFalse(EmailTemplate.objects.exists())

    def test_two_translations_in_one_language_are_a_form_error(self):
        german = {"language": "de", "subject": "Hallo", "content": "Hallo", "html_content": ""}
        response = self.post(TEMPLATE_ADD, [german, dict(german)])
        self.assertEqual(response.status_code, 200)
        self.assertFalse(EmailTemplate.objects.exists())
        template = EmailTemplate.objects.create(name="welcome", subject="Hi", content="Hello")
        EmailTemplate.objects.create(name="welcome", language="de", default_template=template, content="Hallo")
        url = f"/admin/post_office/emailtemplate/{template.pk}/change/"
        existing = template.translated_templates.get()
        response = self.post(url, [{"id": str(existing.pk), **german}, german], initial=1)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(template.translated_templates.count(), 1)
