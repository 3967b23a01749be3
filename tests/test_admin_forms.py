"""The admin's template forms, through the real views (the Email form: tests/test_admin_compose.py)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.test import TestCase

from post_office.models import EmailTemplate

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
