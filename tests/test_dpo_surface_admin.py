"""django-post_office's public surface, part 4: the admin classes, forms and URL names people reuse.

A project's own admin site is built here from django-post_office's names
(``from post_office.admin import ...``), as projects built theirs, and used
through real requests.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.http import Http404
from django.test import TestCase, override_settings
from django.urls import path, reverse

from post_office import mail
from post_office.admin import (
    AttachmentAdmin,
    AttachmentInline,
    CommaSeparatedEmailWidget,
    EmailAdmin,
    EmailTemplateAdmin,
    EmailTemplateAdminForm,
    EmailTemplateAdminFormSet,
    EmailTemplateInline,
    LogAdmin,
    LogInline,
    SubjectField,
    get_message_preview,
    requeue,
)
from post_office.models import STATUS, Attachment, Email, EmailTemplate, Log

SENDER = "shop@example.com"


class ProjectEmailAdmin(EmailAdmin):
    """A project's subclass: django-post_office's inlines and columns."""

    inlines = [AttachmentInline, LogInline]
    list_display = ("to_display", "truncated_message_id", "shortened_subject", "status", "use_template")


class PlainEmailAdmin(admin.ModelAdmin):
    """A project's own admin of Email using django-post_office's action function."""

    actions = [requeue]
    list_display = ("id", "subject", "status")


class ProjectTemplateForm(EmailTemplateAdminForm):
    def clean_subject(self) -> str:
        subject = super().clean_subject()
        if "TODO" in subject:
            raise forms.ValidationError("Finish the subject first.")
        return subject


class ProjectTemplateAdmin(EmailTemplateAdmin):
    form = ProjectTemplateForm
    list_display = ("name", "description_shortened", "languages_compact")


class ProjectTranslationInline(EmailTemplateInline):
    formset = EmailTemplateAdminFormSet


project_site = admin.AdminSite(name="project")
project_site.register(Email, ProjectEmailAdmin)
project_site.register(EmailTemplate, ProjectTemplateAdmin)
project_site.register(Attachment, AttachmentAdmin)
project_site.register(Log, LogAdmin)
plain_site = admin.AdminSite(name="plain")
plain_site.register(Email, PlainEmailAdmin)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("project/", project_site.urls),
    path("plain/", plain_site.urls),
]


@override_settings(ROOT_URLCONF=__name__)
class ProjectAdminTest(TestCase):
    def setUp(self):
        self.client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))

    def test_an_email_page_shows_the_attachment_and_log_inlines(self):
        email = mail.send(
            "ann@example.com",
            SENDER,
            subject="Invoice",
            message="m",
            attachments={"invoice.pdf": ContentFile(b"%PDF-1.4")},
        )
        Log.objects.create(email=email, status=STATUS.failed, exception_type="SMTPDataError", message="451 try later")
        page = self.client.get(reverse("project:post_office_email_change", args=[email.pk]))
        self.assertEqual(page.status_code, 200)
        self.assertContains(page, "451 try later")
        self.assertContains(page, "invoice.pdf")
        inlines = [type(formset.opts).__name__ for formset in page.context["inline_admin_formsets"]]
        self.assertEqual(inlines, ["AttachmentInline", "LogInline"])

    def test_inline_images_are_left_out_of_the_attachment_inline(self):
        email = mail.send(
            "ann@example.com",
            SENDER,
            subject="Logo",
            html_message='<img src="cid:logo">',
            attachments={
                "logo.png": {
                    "file": ContentFile(b"\x89PNG"),
                    "mimetype": "image/png",
                    "headers": {"Content-Disposition": "inline", "Content-ID": "<logo>"},
                },
                "terms.pdf": ContentFile(b"%PDF-1.4"),
            },
        )
        request = self.client.get(reverse("project:post_office_email_change", args=[email.pk])).wsgi_request
        inline = AttachmentInline(Email, project_site)
        names = [link.attachment.name for link in inline.get_queryset(request).filter(email=email)]
        self.assertEqual(names, ["terms.pdf"])

    def test_the_changelist_shows_django_post_offices_columns(self):
        mail.send(["ann@example.com", "bob@example.com"], SENDER, subject="Columns", message="m")
        page = self.client.get(reverse("project:post_office_email_changelist"))
        self.assertContains(page, "ann@example.com, bob@example.com")
        self.assertContains(page, "Columns")

    def test_django_post_offices_email_admin_methods(self):
        email = mail.send(
            "ann@example.com", SENDER, subject="A subject " + "x" * 120, message="plain", html_message="<p>Hi</p>"
        )
        model_admin = project_site._registry[Email]
        self.assertEqual(model_admin.to_display(email), "ann@example.com")
        self.assertEqual(len(model_admin.shortened_subject(email)), 100)
        self.assertEqual(model_admin.truncated_message_id(email), str(email.pk))
        email.message_id = "<20240101.abcdef@shop.example>"
        self.assertEqual(model_admin.truncated_message_id(email), "20240101.…")
        self.assertIs(model_admin.use_template(email), False)
        self.assertEqual(model_admin.render_subject(email), email.subject)
        self.assertEqual(model_admin.render_plaintext_body(email), "<pre>plain</pre>")
        self.assertIn(
            reverse("project:post_office_email_preview", args=[email.pk]), model_admin.render_html_body(email)
        )
        request = self.client.get(reverse("project:post_office_email_changelist")).wsgi_request
        self.assertContains(model_admin.preview_html(request, email.pk), "<p>Hi</p>")
        with self.assertRaises(Http404):
            model_admin.fetch_email_image(request, email.pk, 32 * "0")
        self.assertEqual(model_admin.resend(request, email.pk).status_code, 200)

    def test_django_post_offices_template_admin_columns_and_renaming(self):
        base = EmailTemplate.objects.create(name="welcome", description="First line\nsecond", subject="Hi")
        base.translated_templates.create(language="fr", subject="Salut")
        base.translated_templates.create(language="de", subject="Hallo")
        model_admin = project_site._registry[EmailTemplate]
        self.assertEqual(model_admin.description_shortened(base), "First line")
        self.assertEqual(model_admin.languages_compact(base), "de, fr")
        data = {
            "name": "greeting",
            "description": "",
            "subject": "Hi",
            "content": "",
            "html_content": "",
            "translated_templates-TOTAL_FORMS": "0",
            "translated_templates-INITIAL_FORMS": "0",
        }
        formsets = self.client.get(reverse("project:post_office_emailtemplate_change", args=[base.pk]))
        for formset in formsets.context["inline_admin_formsets"]:
            management = formset.formset.management_form
            data.update({f"{management.prefix}-{key}": value for key, value in management.initial.items()})
            for form in formset.formset.forms:
                data.update({form.add_prefix(name): value for name, value in form.initial.items() if value is not None})
                data[form.add_prefix("id")] = str(form.instance.pk)
        page = self.client.post(reverse("project:post_office_emailtemplate_change", args=[base.pk]), data)
        self.assertEqual(page.status_code, 302)
        self.assertEqual(set(EmailTemplate.objects.values_list("name", flat=True)), {"greeting"})

    def test_the_standard_admin_url_names(self):
        email = mail.send("ann@example.com", SENDER, subject="s", message="m")
        for name in ("changelist", "add"):
            self.assertEqual(self.client.get(reverse(f"admin:post_office_email_{name}")).status_code, 200)
        for name in ("change", "delete", "history"):
            self.assertEqual(
                self.client.get(reverse(f"admin:post_office_email_{name}", args=[email.pk])).status_code, 200
            )
        for model in ("emailtemplate", "log", "attachment"):
            self.assertEqual(self.client.get(reverse(f"admin:post_office_{model}_changelist")).status_code, 200)

    def test_the_template_form_subclass_validates(self):
        data = {
            "name": "welcome",
            "description": "",
            "subject": "TODO",
            "content": "Hi",
            "html_content": "",
            "translated_templates-TOTAL_FORMS": "0",
            "translated_templates-INITIAL_FORMS": "0",
        }
        page = self.client.post(reverse("project:post_office_emailtemplate_add"), data)
        self.assertContains(page, "Finish the subject first.")
        self.assertFalse(EmailTemplate.objects.exists())
        data["subject"] = "Welcome"
        page = self.client.post(reverse("project:post_office_emailtemplate_add"), data)
        self.assertEqual(page.status_code, 302)
        self.assertEqual(EmailTemplate.objects.get().subject, "Welcome")
        listing = self.client.get(reverse("project:post_office_emailtemplate_changelist"))
        self.assertContains(listing, "welcome")

    def test_the_requeue_action_function_in_another_admin(self):
        failed = mail.send("ann@example.com", SENDER, subject="Failed", message="m")
        Email.objects.filter(pk=failed.pk).update(status=STATUS.failed)
        changelist = reverse("plain:post_office_email_changelist")
        self.assertContains(self.client.get(changelist), 'value="requeue"')
        data = {"action": "requeue", ACTION_CHECKBOX_NAME: [str(failed.pk)], "index": "0"}
        confirmation = self.client.post(changelist, data)
        self.assertEqual(confirmation.status_code, 200)
        self.assertEqual(Email.objects.get(pk=failed.pk).status, STATUS.failed, "nothing before it is confirmed")
        self.client.post(changelist, {**data, "post": "yes"})
        self.assertEqual(Email.objects.get(pk=failed.pk).status, STATUS.queued)

    def test_django_post_office_url_names(self):
        email = mail.send("ann@example.com", SENDER, subject="s", html_message="<p>Hi</p>")
        preview = reverse("admin:post_office_email_preview", args=[email.pk])
        image = reverse("admin:post_office_email_image", kwargs={"pk": email.pk, "content_id": 32 * "0"})
        resend = reverse("admin:resend", args=[email.pk])
        self.assertEqual(preview, f"/admin/post_office/email/{email.pk}/preview/")
        self.assertEqual(resend, f"/admin/post_office/email/{email.pk}/resend/")
        self.assertContains(self.client.get(preview), "<p>Hi</p>")
        self.assertEqual(self.client.get(image).status_code, 404)
        self.assertEqual(self.client.get(resend).status_code, 200)


class PiecesTest(TestCase):
    def test_get_message_preview(self):
        self.assertEqual(get_message_preview(Log(message="short")), "short")
        self.assertEqual(get_message_preview(Log(message="x" * 30)), "x" * 25 + "...")

    def test_widgets(self):
        widget = CommaSeparatedEmailWidget()
        self.assertEqual(widget.attrs["class"], "vTextField")
        self.assertEqual(widget.format_value(["a@example.com", "b@example.com"]), "a@example.com, b@example.com")
        self.assertEqual(widget.format_value("a@example.com"), "a@example.com")
        self.assertEqual(widget.format_value([]), "")
        self.assertEqual(SubjectField().attrs["style"], "width: 610px;")

    def test_form_names_are_the_template_admins_own(self):
        self.assertIs(EmailTemplateAdmin.form, EmailTemplateAdminForm)
        self.assertIn(EmailTemplateInline, EmailTemplateAdmin.inlines)
        self.assertIs(EmailTemplateInline.formset, EmailTemplateAdminFormSet)
        self.assertEqual(ProjectTranslationInline.model, EmailTemplate)
