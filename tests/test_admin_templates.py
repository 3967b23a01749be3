"""Templates in the admin: edit (errors at the field and line, editor assets), preview, send a test, versions.

Everything through the real admin URLs with the test client, logged in as a superuser,
a view-only staff member and a staff member without permission; one class runs the
pages on a custom AdminSite.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
from typing import Any

from django.contrib import admin as django_admin
from django.contrib.auth.models import Permission, User
from django.core import mail as django_mail
from django.core.management import call_command
from django.test import Client, TestCase, modify_settings, override_settings
from django.urls import path

from post_office.admin.email_templates import EmailTemplateAdmin
from post_office.admin.template_versions import side_by_side
from post_office.choices import STATUS
from post_office.models import Email, EmailTemplate, EmailTemplateVersion, Log

from .failing_backend import FailingBackend

BASE = "/admin/post_office/emailtemplate/"


def change_data(template: EmailTemplate, **fields: str) -> dict[str, str]:
    """The change form as the browser posts it, with the template's translations."""
    data = {
        "name": template.name,
        "description": template.description,
        "subject": template.subject,
        "content": template.content,
        "html_content": template.html_content,
    }
    translations = list(template.translated_templates.order_by("pk"))
    data["translated_templates-TOTAL_FORMS"] = str(len(translations))
    data["translated_templates-INITIAL_FORMS"] = str(len(translations))
    data["translated_templates-MIN_NUM_FORMS"] = "0"
    data["translated_templates-MAX_NUM_FORMS"] = "1000"
    for index, item in enumerate(translations):
        prefix = f"translated_templates-{index}-"
        data.update(
            {
                prefix + "id": str(item.pk),
                prefix + "default_template": str(template.pk),
                prefix + "language": item.language,
                prefix + "subject": item.subject,
                prefix + "content": item.content,
                prefix + "html_content": item.html_content,
            }
        )
    data.update(fields)
    return data


class TemplateAdminTestCase(TestCase):
    prefix = BASE

    @classmethod
    def setUpTestData(cls) -> None:
        cls.superuser = User.objects.create_superuser("admin", "admin@example.com", None)
        cls.template = EmailTemplate.objects.create(
            name="welcome",
            subject="Hello {{ user.name }}",
            content="Dear {{ user.name }},\n{% for item in order.items %}- {{ item.title }}\n{% endfor %}",
            html_content="<p>Dear <b>{{ user.name }}</b></p>",
        )
        cls.german = EmailTemplate.objects.create(
            name="welcome",
            language="de",
            default_template=cls.template,
            subject="Hallo {{ user.name }}",
            content="Liebe(r) {{ user.name }}",
        )

    def setUp(self) -> None:
        self.client.force_login(self.superuser)

    def url(self, suffix: str = "change/", template: EmailTemplate | None = None) -> str:
        return f"{self.prefix}{(template or self.template).pk}/{suffix}"

    def staff(self, name: str, *codenames: str) -> User:
        user = User.objects.create_user(name, f"{name}@example.com", None, is_staff=True)
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="post_office", codename__in=codenames)
        )
        return user


class EditingTest(TemplateAdminTestCase):
    def test_a_syntax_error_in_the_base_template_is_shown_at_its_field_with_its_line(self):
        content = "Line one\nLine two\n{% if user %}never closed"
        response = self.client.post(self.url(), change_data(self.template, content=content))
        self.assertEqual(response.status_code, 200)
        errors = response.context["adminform"].form.errors
        self.assertEqual(list(errors), ["content"])
        self.assertEqual(len(errors["content"]), 1, "the model's copy of the error is not shown twice")
        self.assertIn("Line 3:", errors["content"][0])
        self.assertContains(response, 'data-error-line="3"')
        self.template.refresh_from_db()
        self.assertNotIn("never closed", self.template.content)

    def test_a_syntax_error_in_a_translation_is_shown_at_its_field(self):
        data = change_data(
            self.template, **{"translated_templates-0-html_content": "<p>\n{{ user.name|nofilter }}</p>"}
        )
        response = self.client.post(self.url(), data)
        self.assertEqual(response.status_code, 200)
        errors = response.context["inline_admin_formsets"][0].formset.errors[0]
        self.assertEqual(list(errors), ["html_content"])
        self.assertIn("Line 2:", errors["html_content"][0])
        self.assertEqual(len(errors["html_content"]), 1)

    def test_a_subject_error_is_at_the_subject(self):
        response = self.client.post(self.url(), change_data(self.template, subject="Hi {% endif %}"))
        self.assertIn("Line 1:", response.context["adminform"].form.errors["subject"][0])

    def test_the_editor_ships_with_the_package_and_the_fields_stay_textareas(self):
        page = self.client.get(self.url()).content.decode()
        self.assertIn("post_office/template_editor.js", page)
        self.assertIn("post_office/template_admin.css", page)
        self.assertIn("post_office/template_preview.js", page)
        self.assertRegex(page, r'<textarea name="content"[^>]*class="vLargeTextField po-code-editor"')
        self.assertRegex(page, r'<textarea name="translated_templates-0-html_content"[^>]*po-code-editor')
        # No asset from anywhere but the project's own static files.
        self.assertNotRegex(page, r'(src|href)="(https?:)?//')

    def test_the_editor_assets_work_with_manifest_static_files(self):
        with tempfile.TemporaryDirectory() as root:
            storages = {
                "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
            }
            staticfiles = modify_settings(INSTALLED_APPS={"append": "django.contrib.staticfiles"})
            with staticfiles, override_settings(STATIC_ROOT=root, STATIC_URL="/static/", STORAGES=storages):
                call_command("collectstatic", interactive=False, verbosity=0)
                page = self.client.get(self.url()).content.decode()
        self.assertRegex(page, r'src="/static/post_office/template_editor\.[0-9a-f]{12}\.js"')
        self.assertRegex(page, r'href="/static/post_office/template_admin\.[0-9a-f]{12}\.css"')

    def test_the_change_page_links_history_and_send_test(self):
        page = self.client.get(self.url()).content.decode()
        self.assertIn(f'href="{self.url("versions/")}" id="po-versions-link"', page)
        self.assertIn(f'href="{self.url("send-test/")}" id="po-send-test-link"', page)
        self.assertIn(f'href="{self.url("versions/", self.german)}"', page)


class PreviewTest(TemplateAdminTestCase):
    def preview(self, language: str = "", context: Any = None, fragment: bool = True, **fields: str) -> Any:
        data = change_data(self.template, **fields)
        data["po_preview-language"] = language
        data["po_preview-context"] = context if isinstance(context, str) else json.dumps(context or {})
        if fragment:
            data["_po_fragment"] = "1"
        return self.client.post(self.url("preview/"), data)

    def test_the_panel_is_pre_filled_with_the_variables_the_templates_use(self):
        response = self.client.get(self.url())
        form = response.context["po_preview"]["form"]
        sample = json.loads(form.initial["context"])
        self.assertEqual(sample, {"user": {"name": "name"}, "order": {"items": [{"title": "title"}]}})
        page = response.content.decode()
        for element in ('id="po-preview-language"', 'id="po-preview-context"', 'id="po-preview-button"'):
            self.assertIn(element, page)
        self.assertIn('id="po-preview-result"', page)
        self.assertIn(f'formaction="{self.url("preview/")}"', page)
        # The preview's fields come after the save buttons: Enter in a field still saves.
        self.assertLess(page.index('name="_save"'), page.index('id="po-preview-button"'))

    def test_the_preview_renders_the_text_being_edited_without_saving_it(self):
        response = self.preview(
            context={"user": {"name": "Alice"}, "order": {"items": [{"title": "Book"}]}},
            subject="Edited {{ user.name }}",
        )
        self.assertEqual(response.status_code, 200)
        result = response.context["result"]
        self.assertEqual(result.preview.subject, "Edited Alice")
        self.assertEqual(result.preview.message, "Dear Alice,\n- Book\n")
        self.assertTrue(response.context["from_form"])
        self.assertContains(response, 'id="po-preview-subject">Edited Alice<')
        self.template.refresh_from_db()
        self.assertEqual(self.template.subject, "Hello {{ user.name }}")
        self.assertFalse(EmailTemplateVersion.objects.exists())
        self.assertFalse(Email.objects.exists())

    def test_a_translation_is_previewed_and_a_missing_part_is_warned_about(self):
        response = self.preview("de", {"user": {"name": "Jörg"}})
        result = response.context["result"]
        self.assertEqual(result.used_language, "de")
        self.assertEqual(result.preview.subject, "Hallo Jörg")
        self.assertEqual(result.preview.html_message, "")
        self.assertIn("The de translation has no HTML; the base template has one.", result.warnings)
        self.assertContains(response, "The de translation has no HTML")
        # The change page warns about it too, before any preview.
        self.assertContains(self.client.get(self.url()), "The de translation has no HTML")

    def test_a_language_without_translation_falls_back_like_mail_send(self):
        result = self.preview("fr", {"user": {"name": "Zoé"}}).context["result"]
        self.assertEqual(result.used_language, "")
        self.assertEqual(result.preview.subject, "Hello Zoé")
        self.assertTrue(any("no fr translation" in warning for warning in result.warnings))

    def test_the_html_is_in_a_sandboxed_iframe_that_loads_nothing_remote(self):
        hostile = '<script>alert(1)</script><img src="https://remote.example/x.png" onerror="alert(2)">'
        response = self.preview(context={"user": {"name": "A"}}, html_content=hostile)
        page = response.content.decode()
        iframe = re.search(r"<iframe[^>]*>", page).group(0)
        self.assertIn('sandbox=""', iframe)
        srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', iframe).group(1))
        self.assertTrue(srcdoc.startswith('<meta http-equiv="Content-Security-Policy" content="default-src \'none\';'))
        self.assertIn("img-src data:;", srcdoc)
        self.assertIn("<script>alert(1)</script>", srcdoc)
        # Outside the iframe's document the email's HTML is only ever text.
        self.assertNotIn("<script>alert(1)", page.replace(iframe, ""))
        self.assertNotIn("<script>alert(1)", iframe)

    def test_bad_json_and_render_errors_are_messages_not_500s(self):
        response = self.preview(context='{"user": ')
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "This is not valid JSON")
        response = self.preview(context="[1, 2]")
        self.assertContains(response, "The context must be a JSON object")
        response = self.preview(context={}, content='{% include "no/such/file.txt" %}')
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "The template could not be rendered: TemplateDoesNotExist")
        response = self.preview(context={}, content="{% if %}")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "The template could not be rendered: TemplateSyntaxError")

    def test_variables_missing_from_the_context_are_named(self):
        result = self.preview(context={"order": {"items": []}}).context["result"]
        self.assertIn("Not in the context (rendered empty): user", result.warnings)
        self.assertEqual(result.preview.subject, "Hello ")

    def test_an_empty_context_is_the_sample_context(self):
        result = self.preview(context="").context["result"]
        self.assertEqual(result.preview.subject, "Hello name")

    def test_without_javascript_the_preview_is_a_page_that_keeps_the_edits(self):
        response = self.preview(context={"user": {"name": "Bob"}}, fragment=False, subject="Draft {{ user.name }}")
        self.assertEqual(response.status_code, 200)
        self.assertTemplateUsed(response, "admin/post_office/emailtemplate/preview.html")
        page = response.content.decode()
        self.assertIn("Draft Bob", page)
        self.assertIn('<input type="hidden" name="subject" value="Draft {{ user.name }}">', page)
        self.assertIn('name="csrfmiddlewaretoken"', page)
        self.assertIn('<a href="/admin/">Home</a>', page)

    def test_a_get_shows_the_saved_template_and_changes_nothing(self):
        response = self.client.get(self.url("preview/"))
        self.assertEqual(response.status_code, 200)
        self.assertIsNone(response.context["result"])
        self.assertFalse(response.context["from_form"])

    def test_the_preview_needs_a_csrf_token(self):
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.superuser)
        response = client.post(self.url("preview/"), {"po_preview-language": "", "_po_fragment": "1"})
        self.assertEqual(response.status_code, 403)

    @override_settings(POST_OFFICE={"RESTRICTED_TEMPLATES": True})
    def test_restricted_mode_applies_to_the_preview(self):
        result = self.preview(context={}, content="{% debug %}").context["result"]
        self.assertIn("not allowed", result.error)


class TestSendTest(TemplateAdminTestCase):
    def send(self, client: Client | None = None, **fields: str) -> Any:
        data = {"to": "tester@example.com", "language": "", "context": json.dumps({"user": {"name": "Tess"}})}
        data.update(fields)
        with self.captureOnCommitCallbacks(execute=True):
            return (client or self.client).post(self.url("send-test/"), data)

    def test_the_form_is_pre_filled_with_the_users_address_and_the_sample_context(self):
        response = self.client.get(self.url("send-test/"))
        self.assertEqual(response.status_code, 200)
        page = response.content.decode()
        self.assertRegex(page, r'<input type="email" name="to" value="admin@example.com"[^>]*id="po-test-to"')
        self.assertIn('id="po-test-language"', page)
        self.assertIn('id="po-test-context"', page)
        self.assertIn('id="po-send-test-button"', page)
        self.assertEqual(json.loads(response.context["form"].initial["context"])["user"], {"name": "name"})
        self.assertFalse(Email.objects.exists(), "a GET sends nothing")

    def test_a_test_is_sent_now_and_the_result_page_says_so(self):
        response = self.send(language="de")
        email = Email.objects.get()
        self.assertRedirects(response, self.url(f"send-test/{email.pk}/"), fetch_redirect_response=False)
        self.assertEqual([message.subject for message in django_mail.outbox], ["Hallo Tess"])
        self.assertEqual(email.status, STATUS.sent)
        self.assertEqual((email.template_id, email.language), (self.german.pk, "de"))
        page = self.client.get(response["Location"])
        self.assertContains(page, 'data-outcome="sent"')
        self.assertContains(page, "Sent to tester@example.com.")
        self.assertContains(page, f'href="/admin/post_office/email/{email.pk}/change/" id="po-test-email-link"')

    @override_settings(POST_OFFICE={"BACKENDS": {"default": "tests.failing_backend.FailingBackend"}})
    def test_a_failed_delivery_shows_the_error(self):
        FailingBackend.error = ConnectionRefusedError("connection refused by the test")
        response = self.send()
        email = Email.objects.get()
        self.assertNotEqual(email.status, STATUS.sent)
        page = self.client.get(response["Location"])
        self.assertContains(page, 'id="po-test-logs"')
        self.assertContains(page, "ConnectionRefusedError")
        self.assertContains(page, "connection refused by the test")
        self.assertNotContains(page, 'data-outcome="sent"')
        self.assertEqual(Log.objects.get().email, email)

    def test_a_bad_address_is_a_form_error_and_nothing_is_queued(self):
        for address in ("not an address", "a@b.example\r\nBcc: victim@example.com", ""):
            with self.subTest(address):
                response = self.send(to=address)
                self.assertEqual(response.status_code, 200)
                self.assertIn("to", response.context["form"].errors)
        response = self.send(context="{not json")
        self.assertIn("context", response.context["form"].errors)
        self.assertFalse(Email.objects.exists())
        self.assertEqual(django_mail.outbox, [])

    def test_an_error_from_mail_send_is_shown_and_nothing_is_queued(self):
        # Strict variables: mail.send refuses a context that lacks what the template uses.
        with override_settings(POST_OFFICE={"STRICT_TEMPLATE_VARIABLES": True}):
            response = self.send(context="{}")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, 'id="po-test-error"')
        self.assertContains(response, "missing from the context")
        self.assertFalse(Email.objects.exists())

    def test_sending_needs_the_change_permission_and_a_csrf_token(self):
        viewer = self.staff("viewer", "view_emailtemplate")
        self.client.force_login(viewer)
        self.assertEqual(self.client.get(self.url("send-test/")).status_code, 403)
        self.assertEqual(self.send().status_code, 403)
        self.client.force_login(self.staff("nobody"))
        self.assertEqual(self.send().status_code, 403)
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.superuser)
        self.assertEqual(self.send(client).status_code, 403)
        self.assertFalse(Email.objects.exists())

    def test_the_result_page_shows_only_tests_of_this_template(self):
        other = EmailTemplate.objects.create(name="other", subject="x", content="y")
        self.send()
        email = Email.objects.get()
        self.assertEqual(self.client.get(self.url(f"send-test/{email.pk}/", other)).status_code, 404)


class VersionsTest(TemplateAdminTestCase):
    def test_every_save_from_code_keeps_the_previous_text(self):
        self.template.subject = "Hi {{ user.name }}"
        self.template.save()
        self.template.save()  # nothing changed: no version
        version = self.template.versions.get()
        self.assertEqual((version.subject, version.replaced_by, version.language), ("Hello {{ user.name }}", "", ""))
        self.german.content = "Hallo"
        self.german.save()
        self.assertEqual(self.german.versions.get().content, "Liebe(r) {{ user.name }}")

    def test_saving_in_the_admin_keeps_versions_of_the_template_and_its_translations(self):
        data = change_data(self.template, subject="New subject", **{"translated_templates-0-subject": "Neu"})
        response = self.client.post(self.url(), data)
        self.assertEqual(response.status_code, 302, response.content[:500])
        self.assertEqual(self.template.versions.get().replaced_by, "admin")
        self.assertEqual(self.german.versions.get().subject, "Hallo {{ user.name }}")
        self.assertEqual(self.german.versions.get().replaced_by, "admin")

    def test_the_history_shows_a_diff_with_the_current_text_escaped(self):
        self.template.html_content = '<p>Dear <b>{{ user.name }}</b></p>\n<script>alert("x")</script>'
        self.template.save()
        version = self.template.versions.get()
        listing = self.client.get(self.url("versions/"))
        self.assertContains(listing, self.url(f"versions/{version.pk}/"))
        page = self.client.get(self.url(f"versions/{version.pk}/"))
        self.assertEqual(page.status_code, 200)
        content = page.content.decode()
        self.assertNotIn('<script>alert("x")', content)
        self.assertIn("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;", content)
        self.assertIn('class="po-diff-insert"', content)
        self.assertIn('id="po-restore-button"', content)
        self.assertEqual([d["name"] for d in page.context["diffs"] if d["changed"]], ["html_content"])

    def test_side_by_side_rows(self):
        rows = side_by_side("a\nb\nc", "a\nB\nc\nd")
        self.assertEqual([row.kind for row in rows], ["equal", "replace", "equal", "insert"])
        self.assertEqual((rows[1].old_text, rows[1].new_text, rows[3].new_number), ("b", "B", 4))
        far = side_by_side(
            "\n".join(map(str, range(20))), "\n".join(map(str, range(20))).replace("0", "zero", 1) + "\nend"
        )
        self.assertIn("gap", [row.kind for row in far])

    def test_a_version_is_restored_in_one_click_and_the_restore_can_be_undone(self):
        self.template.subject = "Second"
        self.template.save()
        first = self.template.versions.get()
        self.assertEqual(self.client.get(self.url(f"versions/{first.pk}/restore/")).status_code, 405)
        response = self.client.post(self.url(f"versions/{first.pk}/restore/"))
        self.assertRedirects(response, self.url(), fetch_redirect_response=False)
        self.template.refresh_from_db()
        self.assertEqual(self.template.subject, "Hello {{ user.name }}")
        undo = self.template.versions.order_by("-pk").first()
        self.assertEqual((undo.subject, undo.replaced_by), ("Second", "admin"))
        self.client.post(self.url(f"versions/{undo.pk}/restore/"))
        self.template.refresh_from_db()
        self.assertEqual(self.template.subject, "Second")

    def test_a_translation_has_its_own_history(self):
        self.german.html_content = "<p>Hallo</p>"
        self.german.save()
        version = self.german.versions.get()
        page = self.client.get(self.url("versions/", self.german))
        self.assertContains(page, self.url(f"versions/{version.pk}/", self.german))
        self.client.post(self.url(f"versions/{version.pk}/restore/", self.german))
        self.german.refresh_from_db()
        self.assertEqual(self.german.html_content, "")
        # Another template's version is not found through this one.
        self.assertEqual(self.client.get(self.url(f"versions/{version.pk}/")).status_code, 404)

    def test_restoring_needs_the_change_permission_and_a_csrf_token(self):
        self.template.subject = "Second"
        self.template.save()
        version = self.template.versions.get()
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.superuser)
        self.assertEqual(client.post(self.url(f"versions/{version.pk}/restore/")).status_code, 403)
        self.client.force_login(self.staff("nobody"))
        self.assertEqual(self.client.get(self.url("versions/")).status_code, 403)
        self.template.refresh_from_db()
        self.assertEqual(self.template.subject, "Second")


class ViewOnlyTest(TemplateAdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.template.subject = "Saved {{ user.name }}"
        self.template.save()
        self.client.force_login(self.staff("viewer", "view_emailtemplate", "view_email"))

    def test_a_viewer_sees_the_preview_and_the_history_but_cannot_send_or_restore(self):
        page = self.client.get(self.url())
        self.assertEqual(page.status_code, 200)
        self.assertContains(page, 'id="po-preview-button"')
        self.assertContains(page, 'id="po-versions-link"')
        self.assertNotContains(page, 'id="po-send-test-link"')
        # A posted text is not rendered for someone who may not edit the template: the saved one is.
        data = {"subject": "{% debug %}", "content": "posted", "po_preview-context": '{"user": {"name": "V"}}'}
        response = self.client.post(self.url("preview/"), {**data, "_po_fragment": "1"})
        self.assertEqual(response.status_code, 200)
        self.assertFalse(response.context["from_form"])
        self.assertEqual(response.context["result"].preview.subject, "Saved V")
        version = self.template.versions.get()
        self.assertEqual(self.client.get(self.url("versions/")).status_code, 200)
        version_page = self.client.get(self.url(f"versions/{version.pk}/"))
        self.assertEqual(version_page.status_code, 200)
        self.assertNotContains(version_page, 'id="po-restore-button"')
        self.assertEqual(self.client.post(self.url(f"versions/{version.pk}/restore/")).status_code, 403)
        self.assertEqual(self.client.get(self.url("send-test/")).status_code, 403)
        self.assertEqual(self.client.post(self.url("send-test/"), {"to": "a@example.com"}).status_code, 403)
        self.template.refresh_from_db()
        self.assertEqual(self.template.subject, "Saved {{ user.name }}")
        self.assertFalse(Email.objects.exists())


# A custom AdminSite, served by this module as the URLconf of CustomSiteTest.
custom_site = django_admin.AdminSite(name="custom_admin")
custom_site.register(EmailTemplate, EmailTemplateAdmin)
custom_site.register(Email, type(django_admin.site._registry[Email]))
urlpatterns = [path("custom/", custom_site.urls)]


@override_settings(ROOT_URLCONF=__name__)
class CustomSiteTest(TemplateAdminTestCase):
    prefix = "/custom/post_office/emailtemplate/"

    def test_every_page_works_on_a_custom_admin_site(self):
        page = self.client.get(self.url()).content.decode()
        self.assertIn(f'formaction="{self.url("preview/")}"', page)
        self.assertIn(f'href="{self.url("send-test/")}"', page)
        preview = self.client.post(
            self.url("preview/"), {**change_data(self.template), "po_preview-context": '{"user": {"name": "C"}}'}
        )
        self.assertContains(preview, "Hello C")
        self.assertContains(preview, '<a href="/custom/">')
        with self.captureOnCommitCallbacks(execute=True):
            sent = self.client.post(self.url("send-test/"), {"to": "c@example.com", "context": "{}"})
        email = Email.objects.get()
        self.assertEqual(sent["Location"], self.url(f"send-test/{email.pk}/"))
        result = self.client.get(sent["Location"])
        self.assertContains(result, f'href="/custom/post_office/email/{email.pk}/change/"')
        self.template.subject = "Changed"
        self.template.save()
        version = self.template.versions.get()
        self.assertContains(self.client.get(self.url("versions/")), self.url(f"versions/{version.pk}/"))
        restored = self.client.post(self.url(f"versions/{version.pk}/restore/"))
        self.assertEqual(restored["Location"], self.url())
        self.template.refresh_from_db()
        self.assertEqual(self.template.subject, "Hello {{ user.name }}")


class SampleContextTest(TestCase):
    """rendering.variables.sample_context: what a template reads, as nested sample data."""

    def sample(self, *sources: str) -> dict[str, Any]:
        from post_office.rendering.variables import sample_context

        return sample_context(*sources)

    def test_variables_and_attributes_nest(self):
        self.assertEqual(
            self.sample("{{ user.name|upper }} {{ user.email }} {{ total|floatformat:digits }}"),
            {"user": {"name": "name", "email": "email"}, "total": "total", "digits": "digits"},
        )

    def test_loops_give_lists_of_what_the_loop_variable_reads(self):
        source = "{% for item in order.items %}{{ item.title }}{{ forloop.counter }}{% empty %}{{ none }}{% endfor %}"
        self.assertEqual(self.sample(source), {"order": {"items": [{"title": "title"}]}, "none": "none"})
        self.assertEqual(
            self.sample("{% for k, v in prices.items %}{{ v.amount }}{% endfor %}"),
            {"prices": {"k": {"amount": "amount"}}},
        )
        self.assertEqual(self.sample("{{ lines.0.text }}"), {"lines": [{"text": "text"}]})

    def test_conditions_with_and_blocktranslate(self):
        source = (
            "{% load i18n %}{% if a.b and not c or d > e.f %}{% elif g %}{% endif %}"
            "{% with n=user.first_name %}{{ n }}{% endwith %}"
            "{% blocktranslate with shop=site.name count counter=cart|length %}{{ counter }} in {{ shop }} for {{ who }}"
            "{% plural %}{{ counter }} in {{ shop }}{% endblocktranslate %}"
            '{% translate "Hi" as greeting %}{{ greeting }}{{ True }}{{ "literal" }}'
        )
        self.assertEqual(
            self.sample(source),
            {
                "a": {"b": "b"},
                "c": "c",
                "d": "d",
                "e": {"f": "f"},
                "g": "g",
                "user": {"first_name": "first_name"},
                "site": {"name": "name"},
                "cart": "cart",
                "who": "who",
            },
        )

    def test_several_sources_merge_and_a_broken_one_is_skipped(self):
        self.assertEqual(self.sample("{{ a.x }}", "{% if %}", "{{ a.y }}", ""), {"a": {"x": "x", "y": "y"}})
